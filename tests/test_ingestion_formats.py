"""DOCX (corpus), TXT in legacy encodings, HTML, type detection, ids, limits and records."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from llmops.ingestion import (
    DocumentError,
    IngestConfig,
    PageRecord,
    TableRecord,
    document_id,
    extract_document,
    inspect_document,
)
from llmops.ingestion.detect import detect_type
from tests.fixtures.ingestion_docs import text_pdf

AR_TEXT = "تعلن هيئة المياه عن تعديل تعرفة المياه اعتباراً من أول يناير. ترتفع الرسوم الثابتة."


def test_docx_keeps_body_order_and_the_table(corpus_dir):
    data = (corpus_dir / "docx" / "blk-paras-and-tables.docx").read_bytes()
    info = inspect_document(data, "blk-paras-and-tables.docx")
    assert info.kind == "docx" and info.page_count == 1
    (page,) = extract_document(data, "blk-paras-and-tables.docx")
    assert len(page.tables) == 1  # the two empty tables do not crash and are not kept
    table = page.tables[0]
    # one cell holding a paragraph, a nested table and a paragraph, in that order
    assert table.rows == [["Text before Table Between Text after"]]
    text = page.text
    lorem, donec = text.index("Lorem ipsum"), text.index("Donec semper")
    assert lorem < text.index(table.markdown) < donec  # paragraph, table, paragraph
    assert table.offset == text.index(table.markdown)
    assert sum("empty table" in w for w in page.warnings) == 2


def _docx_with_heading() -> bytes:
    docx = pytest.importorskip("docx")
    doc = docx.Document()
    doc.add_heading("Tariff review", level=1)
    doc.add_paragraph("The board approved the new tariff.")
    doc.add_heading("Next steps", level=2)
    doc.add_paragraph("Publish it.", style="List Bullet")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def test_docx_headings_keep_a_markdown_prefix():
    (page,) = extract_document(_docx_with_heading(), "review.docx")
    assert page.text.split("\n\n") == [
        "# Tariff review", "The board approved the new tariff.", "## Next steps", "- Publish it."
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("encoding", "text", "language"),
    [
        ("cp1256", AR_TEXT, "ar"),
        ("latin-1", "Le comité a approuvé la réforme du barème de l'eau à l'unanimité.", "fr"),
    ],
)
def test_txt_in_legacy_encodings_is_decoded(encoding, text, language):
    data = ("\n\n".join([text, text])).encode(encoding)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    (page,) = extract_document(data, "notice.txt")
    assert page.text == "\n\n".join([text, text]) and page.language == language
    assert any(encoding.replace("-", "") in w.replace("-", "").replace("_", "") or "decoded" in w
               for w in page.warnings)  # fmt: skip


def test_txt_form_feeds_are_pages():
    pages = extract_document(b"first page text here\n\x0csecond page text here\n", "two.txt")
    assert [p.text for p in pages] == ["first page text here", "second page text here"]
    assert inspect_document(b"first\x0csecond", "two.txt").page_count == 2


HTML = b"""<!DOCTYPE html><html><head><title>FAQ</title><script>var x = 1;</script></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<main><h1>Drought restrictions</h1>
<p>Stage 2 restrictions apply from August 1. Garden sprinklers may only run before 8 am.</p>
<h2>Fines</h2><p>A first breach costs 50 dollars; repeated breaches cost 200 dollars each.</p>
<table><tr><th>Stage</th><th>Sprinklers</th></tr><tr><td>1</td><td>any time</td></tr>
<tr><td>2</td><td>before 8 am</td></tr></table></main>
<footer>Copyright Water Authority</footer></body></html>"""


def test_html_main_text_headings_and_tables():
    (page,) = extract_document(HTML, "faq.html")
    assert "Stage 2 restrictions apply from August 1." in page.text
    assert "# Drought restrictions" in page.text
    assert "var x" not in page.text
    assert page.tables and page.tables[0].rows == [
        ["Stage", "Sprinklers"], ["1", "any time"], ["2", "before 8 am"]]  # fmt: skip


def test_type_is_detected_from_bytes_not_extension():
    assert detect_type(text_pdf([["hello"]]), "report.txt").kind == "pdf"
    assert detect_type(HTML, "page.txt").kind == "html"
    assert detect_type(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "x.pdf").kind == "image"
    assert detect_type(b"II*\x00" + b"\0" * 20, "scan").kind == "image"
    assert detect_type(b"plain words", "notes.pdf").kind == "txt"
    assert detect_type(_docx_with_heading(), "upload.bin").kind == "docx"


@pytest.mark.parametrize(
    ("data", "name", "code", "words"),
    [
        (b"", "empty.txt", "empty", "empty"),
        (b"   \n\t ", "blank.txt", "empty", "whitespace"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old.doc", "unsupported", "legacy"),
        (bytes(range(256)) * 8, "blob.bin", "unsupported", "binary"),
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog", "cut.pdf", "malformed", "malformed"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "bad.png", "malformed", "image"),
    ],
)
def test_bad_inputs_raise_clear_document_errors(data, name, code, words):
    with pytest.raises(DocumentError) as err:
        extract_document(data, name)
    assert err.value.code == code and err.value.source == name
    assert str(err.value).startswith(f"{name}: ") and words in str(err.value).lower()


def test_unsupported_zip_says_what_it_is():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(DocumentError) as err:
        inspect_document(buf.getvalue(), "budget.xlsx")
    assert err.value.code == "unsupported" and "Excel" in err.value.reason


def test_oversize_is_rejected_before_parsing():
    data = text_pdf([["x" * 50]] * 40)
    cfg = IngestConfig(max_file_mb=len(data) / 2**20 / 2)
    for fn in (inspect_document, extract_document):
        with pytest.raises(DocumentError) as err:
            fn(data, "big.pdf", cfg)
        assert err.value.code == "too_large" and "max_file_mb" in err.value.reason


def test_document_id_is_a_stable_partition_key():
    a = document_id(b"abc", "Annual Report (2024) – final.PDF")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", a)
    assert a.startswith("annual-report-2024-final-") and a == document_id(
        b"abc", "x/Annual Report (2024) – final.PDF"
    )
    assert document_id(b"abd", "Annual Report (2024) – final.PDF") != a
    assert re.fullmatch(r"doc-[0-9a-f]{12}", document_id(b"abc", "تقرير.pdf"))


def test_config_from_dict():
    cfg = IngestConfig.from_dict({"ocr_dpi": 200, "arabic": {"remove_diacritics": True}})
    assert cfg.ocr_dpi == 200 and cfg.arabic.remove_diacritics and cfg.arabic.remove_tatweel
    with pytest.raises(ValueError, match="unknown key"):
        IngestConfig.from_dict({"ocr_dpii": 200})
    with pytest.raises(ValueError, match="ocr_workers"):
        IngestConfig(ocr_workers=0)
    assert IngestConfig(pdf_password="secret").to_dict()["pdf_password"] == "***"


def test_records_round_trip():
    table = TableRecord(rows=[["a", "b|c"], ["1", None]], offset=3)
    page = PageRecord("d-1", 2, "abc def", [table], "ocr", 88.5, "en", warnings=["w"])
    again = PageRecord.from_dict(page.to_dict())
    assert again == page and again.tables[0].markdown == "| a | b\\|c |\n|---|---|\n| 1 |  |"
    assert (
        PageRecord.from_dict({**page.to_dict(), "ocr_confidence": float("nan")}).ocr_confidence
        is None
    )
    with pytest.raises(ValueError):
        PageRecord("d", 1, "x", method="magic")
