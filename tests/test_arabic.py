"""Arabic normalisation, visual-order repair and language detection."""

from __future__ import annotations

import unicodedata

import pytest

from llmops.arabic import (
    ArabicConfig,
    detect_language,
    fix_visual_order,
    looks_visual_order,
    normalize_arabic,
)

# Logical-order lines of ../shared/corpus/pdfs/tabula-arabic-rtl.pdf (listed in SOURCES.md).
EXPECTED_RTL_PDF = [
    "اسمي سلطان",
    "من اين انت؟",
    "عندي 47 قطط",
    "هل انت شباك؟",
    "انا من ولاية كارولينا الشمال",
    "اسمي Jeremy في الانجليزية",
    "Jeremy is جرمي in Arabic",
]


def _to_visual(logical: str) -> str:
    """Shape (presentation forms) and lay out a logical line the way a PDF draws it."""
    from bidi import get_display

    shaped = []
    for word in logical.split(" "):
        shaped.append(_shape(word))
    return get_display(" ".join(shaped), base_dir="R")


def _shape(word: str) -> str:
    """Minimal contextual shaping via the Unicode decomposition table (test helper only)."""
    forms: dict[tuple[str, str], str] = {}
    for cp in range(0xFE70, 0xFEFD):
        ch = chr(cp)
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and parts[0] in ("<isolated>", "<initial>", "<medial>", "<final>"):
            forms[(chr(int(parts[1], 16)), parts[0])] = ch
    non_joining_next = set("اأإآدذرزوؤةء")
    out = []
    letters = list(word)
    for i, ch in enumerate(letters):
        prev_joins = i > 0 and letters[i - 1] not in non_joining_next
        prev_joins = prev_joins and (letters[i - 1], "<initial>") in forms
        next_exists = i + 1 < len(letters) and (letters[i + 1], "<final>") in forms
        joins_next = next_exists and ch not in non_joining_next and (ch, "<initial>") in forms
        tag = {
            (False, False): "<isolated>",
            (False, True): "<initial>",
            (True, True): "<medial>",
            (True, False): "<final>",
        }[(prev_joins, joins_next)]
        out.append(forms.get((ch, tag), forms.get((ch, "<isolated>"), ch)))
    return "".join(out)


def test_presentation_forms_folded_and_latin_untouched() -> None:
    # "ﺳﻼﻡ" = seen initial, lam-alef ligature, meem isolated
    assert normalize_arabic("ﺳﻼﻡ") == "سلام"
    assert normalize_arabic("Plain English, 2024: ok.") == "Plain English, 2024: ok."
    assert normalize_arabic("") == ""


def test_tatweel_diacritics_and_letters() -> None:
    word = "مُحَمَّـــد"
    assert normalize_arabic(word) == "مُحَمَّد"  # default: tatweel only
    assert normalize_arabic(word, ArabicConfig(remove_diacritics=True)) == "محمد"
    assert normalize_arabic(word, ArabicConfig(remove_tatweel=False)) == word
    unified = normalize_arabic("أحمد إلى آخر مدرسة", ArabicConfig(unify_letters=True))
    assert unified == "احمد الي اخر مدرسه"
    assert normalize_arabic("أحمد مدرسة") == "أحمد مدرسة"  # not folded by default


def test_digits_and_bidi_controls() -> None:
    assert normalize_arabic("صفحة ١٢٣\u200f") == "صفحة 123"
    assert normalize_arabic("١٢٣", ArabicConfig(unify_digits=False)) == "١٢٣"


def test_config_from_dict_ignores_unknown_keys() -> None:
    cfg = ArabicConfig.from_dict({"remove_diacritics": True, "future_option": 1})
    assert cfg == ArabicConfig(remove_diacritics=True)
    assert ArabicConfig.from_dict(None) == ArabicConfig()
    assert ArabicConfig.from_dict(cfg.to_dict()) == cfg


@pytest.fixture(scope="module")
def rtl_pdf_text(corpus_dir) -> str:
    import pdfplumber

    with pdfplumber.open(corpus_dir / "pdfs" / "tabula-arabic-rtl.pdf") as pdf:
        return "\n".join(page.extract_text() or "" for page in pdf.pages)


def test_corpus_pdf_is_detected_and_fixed(rtl_pdf_text: str) -> None:
    assert looks_visual_order(rtl_pdf_text)
    raw = normalize_arabic(rtl_pdf_text)
    assert "اسمي سلطان" not in raw  # the raw extraction really is reversed
    fixed = fix_visual_order(rtl_pdf_text)
    assert not looks_visual_order(fixed)
    text = normalize_arabic(fixed)
    for expected in EXPECTED_RTL_PDF:
        assert expected in text, expected
    assert not looks_visual_order(text)


def test_synthetic_visual_lines_roundtrip() -> None:
    lines = [
        "ذهب الولد الى المدرسة في الصباح",
        "عندي 3 كتب و 12 قلما",
        "اسمي Jeremy Smith وأنا من القاهرة",
    ]
    visual = "\n".join(_to_visual(line) for line in lines)
    assert looks_visual_order(visual)
    assert normalize_arabic(fix_visual_order(visual)).split("\n") == lines


def test_logical_text_is_not_flagged() -> None:
    logical = "ذهب الولد الى المدرسة في الصباح وقرأ الكتاب مع المعلمة"
    assert not looks_visual_order(logical)
    assert not looks_visual_order("\n".join(_shape(w) for w in logical.split()))
    assert looks_visual_order(logical[::-1])  # plain letters reversed: position evidence
    assert not looks_visual_order("An English page with no Arabic at all.")
    assert fix_visual_order("Only LTR here, 42.") == "Only LTR here, 42."


def test_detect_language() -> None:
    assert detect_language("The committee approved the annual budget after a long debate.") == "en"
    assert detect_language("وافقت اللجنة على الميزانية السنوية بعد نقاش طويل") == "ar"
    assert detect_language("Le comité a approuvé le budget annuel après un long débat.") == "fr"
    assert detect_language("ok") == "und"
    assert detect_language("12 34 56 78 90 !!") == "und"
    assert detect_language("") == "und"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("این گزارش سالانه سازمان آب است و مصرف آب در شهر افزایش یافت", "fa"),
        # Persian as the Arabic OCR model spells it (Arabic yeh and kaf, no Persian letters)
        ("در اين شهر مردم زندگي مي كنند و آب مصرف مي كنند", "fa"),
        ("کمیٹی نے طویل بحث کے بعد سالانہ بجٹ کی منظوری دی", "ur"),
        ("قال الكاتب في كتابه إن الكلام يكون على وجوه", "ar"),
        # an Arabic page with English product names stays Arabic
        ("ارتفع استهلاك المياه في المدينة Microsoft كثيرا وقالت الهيئة إن نظام Dagster يعمل", "ar"),
    ],
)
def test_arabic_script_languages(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_arabic_script_restricted_to_configured_languages() -> None:
    persian = "این گزارش سالانه سازمان آب است و مصرف آب در شهر افزایش یافت"
    assert detect_language(persian, ("en", "ar")) == "ar"  # Persian not configured: the script
    assert detect_language(persian, ("en", "fa")) == "fa"
