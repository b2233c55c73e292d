"""Arabic ligatures in born-digital PDFs: letters come out in logical order from glyph geometry.

A shaped Arabic PDF draws a lam-alef ligature as ONE glyph whose ToUnicode entry holds TWO letters
in logical order ("لأ"). Reversing the decoded visual-order string then swaps them ("األصوات" for
"الأصوات", "االنتخابات" for "الانتخابات"): the bug seen on a real Arabic results table. The PDF
here is built with a real Arabic font and HarfBuzz shaping (fpdf2), so the trap is the one a
word processor produces; the test checks the trap is really in the file before trusting a pass.
"""

from __future__ import annotations

import glob
import io
import re
import subprocess
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

import pdfplumber
import pytest

from llmops.arabic import logical_from_visual, normalize_arabic
from llmops.ingestion import IngestConfig, extract_document
from llmops.ingestion.pdf import glyph_clusters, line_text
from tests.conftest import CORPUS

WORDS = ["الانتخابات", "التشريعية", "الأصوات", "المصرح"]
# Latin runs and numbers sit between Arabic words, so their place is unambiguous.
LINE = "نتائج الانتخابات التشريعية Jeremy Smith الأصوات المصرح بها 12345 صوتا"
CELLS = [["الأصوات", "المصرح بها"], ["12345", "الانتخابات 2024 التشريعية"]]


@lru_cache(maxsize=1)
def arabic_font() -> Path | None:
    """A TrueType font with Arabic letters and lam-alef ligatures (DejaVu Sans, Noto...)."""
    from fontTools.ttLib import TTFont

    candidates: list[str] = []
    try:
        out = subprocess.run(
            ["fc-list", ":lang=ar", "file"], capture_output=True, text=True, timeout=20
        ).stdout
        candidates += [line.split(":")[0].strip() for line in out.splitlines()]
    except (OSError, subprocess.SubprocessError):
        pass
    candidates += glob.glob("/usr/share/fonts/**/*Arabic*.ttf", recursive=True)
    candidates += glob.glob("/usr/share/fonts/**/DejaVuSans.ttf", recursive=True)
    # regular proportional faces first: they carry the fullest Arabic shaping tables
    candidates.sort(key=lambda p: ("Mono" in p, "Bold" in p or "Oblique" in p, len(p)))
    for path in candidates:
        if not path.lower().endswith(".ttf"):
            continue
        try:
            font = TTFont(path, lazy=True)
            cmap = font.getBestCmap() or {}
            if all(ord(ch) in cmap for ch in "الأنتخبصرحشيعة") and "GSUB" in font:
                return Path(path)
        except Exception:  # an unreadable font file is just not a candidate
            continue
    return None


@pytest.fixture(scope="module")
def shaped_pdf() -> bytes:
    font = arabic_font()
    if font is None:
        pytest.skip(
            "no Arabic TrueType font on this machine (install fonts-dejavu-core or "
            "fonts-noto-core: `make tesseract` does)"
        )
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.add_font("arabic", fname=str(font))
    pdf.set_font("arabic", size=14)
    pdf.set_text_shaping(True)  # HarfBuzz: contextual forms and ligatures, visual order
    pdf.cell(text=LINE)
    pdf.ln(20)
    pdf.cell(text="Totals by district, in English, 2024")
    pdf.ln(20)
    with pdf.table(first_row_as_headings=False) as table:
        for row in CELLS:
            cells = table.row()
            for text in row:
                cells.cell(text)
    return bytes(pdf.output())


def test_the_pdf_has_the_ligature_trap(shaped_pdf):
    """One glyph carries lam + alef: reversing the decoded string would swap them."""
    with pdfplumber.open(io.BytesIO(shaped_pdf)) as pdf:
        chars = pdf.pages[0].chars
    ligatures = [c["text"] for c in chars if len(c["text"]) == 2 and c["text"][0] == "ل"]
    if not ligatures:
        pytest.skip(f"font {arabic_font()} forms no lam-alef ligature: no trap to test")
    assert "لأ" in ligatures and "لا" in ligatures
    first_line = [c for c in chars if abs(c["top"] - chars[0]["top"]) < 3]
    naive = "".join(c["text"] for c in sorted(first_line, key=lambda c: c["x0"]))[::-1]
    assert "األصوات" in naive  # the bug this guards against, reproduced on this file


def test_page_text_and_table_cells_are_in_logical_order(shaped_pdf):
    (page,) = extract_document(shaped_pdf, "results.pdf", IngestConfig())
    text = normalize_arabic(page.text)
    assert LINE in text  # words, Latin run and number each in place
    for word in WORDS:
        assert word in text.split()
    for wrong in ["االنتخابات", "األصوات", "املصرح", "الترشيعية"]:
        assert wrong not in text
    assert "Totals by district, in English, 2024" in text  # LTR lines untouched
    (table,) = page.tables
    assert [[normalize_arabic(c) for c in row] for row in table.rows] == CELLS
    assert "12345" in text and "54321" not in text


def _char(text: str, x0: float, x1: float, top: float = 100.0) -> dict:
    return {"text": text, "x0": x0, "x1": x1, "top": top, "bottom": top + 12, "upright": True,
            "width": x1 - x0, "height": 12.0, "size": 12.0, "fontname": "F", "doctop": top,
            "matrix": (12, 0, 0, 12, x0, 700)}  # fmt: skip


def test_letters_sharing_one_glyph_box_keep_stream_order():
    """Producers that split a ligature into two character objects on one box ("لم" of
    المصرح, "شر" of التشريعية): the pair keeps the order it was written in."""
    # visual order, left to right: ح ر ص [ل م] ا, the pair written lam then meem
    chars = [
        _char("ح", 10, 18), _char("ر", 18, 24), _char("ص", 24, 34),
        _char("ل", 34, 44), _char("م", 34.2, 43.9), _char("ا", 44, 48),
    ]  # fmt: skip
    from llmops.ingestion.pdf import _words

    assert line_text(_words(chars)) == "المصرح"
    # a vowel mark written before its letter, on the letter's box, follows the letter
    merged = glyph_clusters([_char("\u064b", 11, 14, top=96), _char("ا", 10, 15)])
    assert [c["text"] for c in merged] == ["ا\u064b"] and merged[0]["top"] == 100
    # the same letter overprinted a fraction of a point away (fake bold) is one letter
    bold = glyph_clusters([_char("ب", 10, 16), _char("ب", 10.3, 16.3), _char("ا", 16.3, 19)])
    assert [c["text"] for c in bold] == ["ب", "ا"]


def test_logical_from_visual_keeps_numbers_and_latin_left_to_right():
    def visual(clusters: list[str]) -> str:
        return logical_from_visual(clusters)

    # RTL line: "عندي 47 قطط" is drawn as ططق 47 يدنع
    assert visual(["ط", "ط", "ق", " ", "4", "7", " ", "ي", "د", "ن", "ع"]) == "عندي 47 قطط"
    # lam-alef as one cluster stays "لا" (not "ال") once the line is read from the right
    assert visual(["ة", "ي", "ز", "ي", "ل", "ج", "ن", "لا", "ا"]) == "الانجليزية"
    # LTR line with an Arabic word: only the Arabic run is read from the right
    assert visual([*"Jeremy is ", "ي", "م", "ر", "ج", *" in Arabic"]) == "Jeremy is جرمي in Arabic"
    # brackets drawn mirrored in RTL text are mirrored back
    assert visual(["(", "ب", "ا", ")"]) == "(اب)"
    assert visual(list("No Arabic 12,345.")) == "No Arabic 12,345."
    with pytest.raises(ValueError, match="base_dir"):
        logical_from_visual(["ا"], base_dir="up")


# --------------------------------------------------------------------------- real files
# PDFs made by real producers (Microsoft Word, Google Docs, Apple Pages), not by this project:
# origin, commit and licence of each in tests/fixtures/pdfs/SOURCES.md.

REAL_PDFS = Path(__file__).parent / "fixtures" / "pdfs"
GOOGLE_DOCS_PDF = CORPUS / "pdfs" / "tabula-arabic-rtl.pdf"  # read from the shared corpus


def _real_pdf(name: str) -> Path:
    """A fixture of ours, or the corpus's copy of the Google Docs file (never copied here)."""
    return GOOGLE_DOCS_PDF if name == GOOGLE_DOCS_PDF.name else REAL_PDFS / name


def _naive(text: str) -> str:
    """What a reader gets by reversing each line of the decoded text (the usual quick fix)."""
    return "\n".join(line[::-1] for line in text.splitlines())


@cache
def _real_page_any(name: str):
    """First page of a real fixture, through the whole extraction."""
    return extract_document(_real_pdf(name).read_bytes(), name, IngestConfig())[0]


def _real_page(name: str):
    page = _real_page_any(name)
    assert page.page_number == 1
    return page


def _plumber(name: str) -> tuple[str, list[dict]]:
    with pdfplumber.open(_real_pdf(name)) as pdf:
        page = pdf.pages[0]
        return page.extract_text(), page.chars


WORD_ARABIC = "docling_right_to_left_01.pdf"  # Microsoft Word LTSC, Arabic prose with Latin runs
WORD_PERSIAN = "docling_right_to_left_03.pdf"  # Microsoft Word 2016, Persian ruled tables
# words read off the rendered page (lam-alef ligatures: لا لأ لإ لآ), and what line reversal
# makes of them on this very file
WORD_ARABIC_WORDS = {
    "الإنتاجية": "اإلنتاجية",
    "المشكلات": "المشكالت",
    "الأدوات": "األدوات",
    "الآلي": "اآللي",
    "الاستفادة": "االستفادة",
    "لإدارة": "إلدارة",
    "خلال": "خالل",
    "علاوة": "عالوة",
}


def test_word_pdf_has_the_ligature_trap():
    """Word writes each lam-alef as one glyph whose ToUnicode holds both letters in logical
    order; the glyphs run in visual order, so reversing the decoded line swaps the pair."""
    text, chars = _plumber(WORD_ARABIC)
    ligatures = {c["text"] for c in chars if len(c["text"]) == 2 and c["text"][0] == "ل"}
    assert ligatures == {"لا", "لأ", "لإ", "لآ"}
    naive = _naive(text)
    for right, swapped in WORD_ARABIC_WORDS.items():
        assert swapped in naive and right not in naive.split()
    text, chars = _plumber(WORD_PERSIAN)
    assert "لا" in {c["text"] for c in chars}
    assert "کاالی" in _naive(text)  # کالای, "of the goods", in the letterhead


def test_word_arabic_pdf_reads_in_logical_order():
    text = normalize_arabic(_real_page(WORD_ARABIC).text)
    words = set(re.findall(r"\w+", text))
    for right, swapped in WORD_ARABIC_WORDS.items():
        assert right in words
        assert swapped not in text
    # the title and a line with Latin runs, as rendered on the page
    assert text.startswith("تحسين الإنتاجية وحل المشكلات من خلال البرمجة بلغة R وPython")
    assert "يمكن استخدام مكتبة pandas في Python لإدارة البيانات بكفاءة" in text
    assert "التعلم الآلي" in text and "أيضًا" in text


def test_word_persian_tables_read_in_logical_order():
    page = _real_page(WORD_PERSIAN)
    rows = [[normalize_arabic(c) for c in row] for t in page.tables for row in t.rows]
    assert ["1403/09/19", "تاريخ ارائه مدارک"] in rows  # value cell left, label cell right
    assert ["436", "شماره جلسه کميته عرضه"] in rows
    assert ["20300", "شماره استاندارد ملی"] in rows
    assert ["بر اساس قيمت های جهانی", "نحوة تعيين قيمت پايه پس از پذيرش کالا در"] in rows
    cells = [c for row in rows for c in row]
    assert "اميدنامه پذيرش در بازار اصلی - کالای داخلی" in cells
    # the company name sits in a frame inside the letterhead cell: read once, not twice
    assert cells.count("شرکت بورس کالای ايران") == 1
    # a value wrapped over three lines stays one cell: the key column of a right-to-left
    # table is its rightmost one
    assert [
        "شمشه و شمشال توليد شده به روش ريخته گری پيوسته مورد مصرف در فولادهای سازه ای - "
        "مطابق آناليز پيوست",
        "نام استاندارد",
    ] in rows
    text = normalize_arabic(page.text)
    assert "استاندارد کالا" in text and "پذيرش در بورس" in text
    assert not any("کاال" in c for c in cells) and "کاال" not in text


@pytest.mark.skipif(not GOOGLE_DOCS_PDF.is_file(), reason="no ../shared/corpus")
def test_google_docs_presentation_form_ligature():
    """Google Docs (Skia) writes Arabic presentation forms: lam-alef is the single code point
    U+FEFB. Folding it to letters before reading the line from the right swaps the pair."""
    name = GOOGLE_DOCS_PDF.name
    text, chars = _plumber(name)
    assert "\ufefb" in {c["text"] for c in chars}
    naive = _naive(unicodedata.normalize("NFKC", text))
    assert "االنجليزية" in naive and "والية" in naive
    (table,) = _real_page(name).tables
    assert [[normalize_arabic(c) for c in row] for row in table.rows] == [
        ["مرحباً", "اسمي سلطان"],
        ["انا من ولاية كارولينا الشمال", "من اين انت؟"],
        ["1234", "عندي 47 قطط"],
        ["هل انت شباك؟", "اسمي Jeremy في الانجليزية"],
        ["Jeremy is جرمي in Arabic", ""],
    ]


def test_unruled_table_cells_read_right_to_left():
    """Apple Pages, a table without rules: Arabic cells are read from their glyph positions
    like any other line (they came out in visual order: "ليربإ" for "إبريل")."""
    name = "pdfbox_BidiSample.pdf"
    text, _ = _plumber(name)
    assert "ليربإ" in text and "(رياني)" in text  # visual order in the text layer
    (table,) = _real_page(name).tables
    assert [[normalize_arabic(c) for c in row] for row in table.rows] == [
        ["14 april 1434", "14 إبريل 1434"],  # Arabic-Indic digits unified by normalize_arabic
        ["14-april-1434", "14-إبريل-1434"],
        ["(january)", "(يناير)"],
        ["«self test»", "«إختبار ذاتي»"],
    ]
    assert "A line with an Arabic العربية word embedded." in _real_page(name).text


def test_zero_width_vowel_marks_go_to_their_letter():
    """XeTeX (xdvipdfmx) draws every haraka as a zero-width glyph at the pen position, a
    fraction of a point from two letters; box overlap alone gave "بسِمِ اللهَِّ" for the
    basmala. Expected text: the comment in the file's own source, quran-test2.tex."""
    page = _real_page_any("ctan_quran-test2.pdf")
    text = normalize_arabic(page.text)
    basmala = normalize_arabic("بِسمِ اللَّهِ الرَّحمٰنِ الرَّحيمِ")
    assert text.startswith(basmala)
    for verse in ["الحَمدُ لِلَّهِ رَبِّ العالَمينَ", "إِيّاكَ نَعبُدُ وَإِيّاكَ", "إِنّا أَعطَيناكَ الكَوثَرَ"]:
        assert normalize_arabic(verse) in text
    for wrong in ["بسِمِ", "اللهَِّ", "الرحَّمنِٰ", "ربَِّ"]:
        assert normalize_arabic(wrong) not in text
    _, chars = _plumber("ctan_quran-test2.pdf")
    assert any(c["x1"] == c["x0"] and unicodedata.combining(c["text"]) for c in chars)


def test_zero_width_mark_geometry_from_tex_producers():
    """Glyph boxes copied from real files: LuaTeX writes إلى in logical order with the hamza
    below 0.3pt left of its alef and inside the lam's box; XeTeX moves a damma 2.3pt into the
    letter before its own (استُخدِم)."""
    lua = [_char("ا", 362.9, 364.8), _char("\u0655", 362.6, 362.6), _char("ل", 360.8, 362.9),
           _char("ى", 354.5, 360.8)]  # fmt: skip
    assert [c["text"] for c in glyph_clusters(lua)] == ["ا\u0655", "ل", "ى"]
    xetex = [
        _char("خ", 449.83, 456.21),
        _char("\u064f", 453.89, 453.89),
        _char("ت", 456.21, 459.13),
    ]
    assert [c["text"] for c in glyph_clusters(xetex)] == ["خ", "ت\u064f"]
    # next to Latin a mark keeps the box rule: the accent stays on the letter it is drawn over,
    # though the next letter's left edge is nearer
    latin = [_char("e", 10, 16), _char("\u0301", 15.5, 15.5), _char("x", 16, 22)]
    assert [c["text"] for c in glyph_clusters(latin)] == ["e\u0301", "x"]
