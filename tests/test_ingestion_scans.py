"""OCR fallback: scanned pages (generated here with PIL) are OCR'd, good text layers never are."""

from __future__ import annotations

import pytest

from llmops.ingestion import DocumentError, IngestConfig, extract_document
from llmops.ingestion.quality import text_layer_problem
from llmops.ocr import cer
from tests.fixtures.ingestion_docs import (
    has_raqm,
    image_pdf,
    merge_pdfs,
    multipage_tiff,
    png_bytes,
    scan_image,
    text_pdf,
)

CFG = IngestConfig(ocr_dpi=200)
EN_LINES = ["Invoice number 4471 for pump maintenance", "Total due within thirty days of receipt"]
AR_LINES = ["تقرير هيئة المياه السنوي", "ارتفع استهلاك المياه في المدينة"]
TEXT_PAGE = ["Quarterly report of the harbour commission.",
             "The harbour handled 1,204 vessels in the spring quarter."]  # fmt: skip


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def en_scan():
    return scan_image(EN_LINES)


@pytest.fixture(scope="module")
def ar_scan():
    if not has_raqm():
        pytest.skip("PIL without raqm cannot shape Arabic for the synthetic scan")
    return scan_image(AR_LINES, arabic=True)


def test_mixed_pdf_ocrs_only_the_scanned_pages(en_scan, ar_scan):
    born = text_pdf([TEXT_PAGE, ["Second text page about tide tables and mooring fees."]])
    mixed = merge_pdfs(
        [(born, [0]), (image_pdf([en_scan]), None), (born, [1]), (image_pdf([ar_scan]), None)]
    )
    pages = extract_document(mixed, "mixed.pdf", CFG)
    assert [p.method for p in pages] == ["text", "ocr", "text", "ocr"]
    assert [p.ocr_confidence is None for p in pages] == [True, False, True, False]
    assert pages[0].text == "\n".join(TEXT_PAGE)
    assert cer(_flat(pages[1].text), " ".join(EN_LINES)) < 0.05
    assert pages[1].language == "en" and pages[1].ocr_confidence > 60
    assert cer(_flat(pages[3].text), " ".join(AR_LINES)) < 0.15
    assert pages[3].language == "ar"
    assert any("no text layer" in w for w in pages[1].warnings)


def test_short_text_layer_is_ocrd_only_when_the_page_carries_an_image(en_scan):
    """An image page is a scan; a page with only "7" and no image is a (nearly) blank page."""
    doc = merge_pdfs([(image_pdf([en_scan]), None), (text_pdf([["7"]]), None)])
    pages = extract_document(doc, "stamped.pdf", CFG)
    assert pages[0].method == "ocr"
    assert pages[1].method == "text" and pages[1].text == "7"  # short but no image: kept


def test_png_and_multipage_tiff_go_straight_to_ocr(en_scan):
    (page,) = extract_document(png_bytes(en_scan), "scan.png", CFG)
    assert page.method == "ocr" and "Invoice number 4471" in page.text
    second = scan_image(["Meter readings are taken every second month"])
    pages = extract_document(multipage_tiff([en_scan, second]), "scans.tiff", CFG)
    assert [p.page_number for p in pages] == [1, 2]
    assert all(p.method == "ocr" for p in pages)
    assert "Meter readings" in pages[1].text and "pump maintenance" in pages[0].text


def test_ocr_worker_pool_gives_the_same_pages(en_scan):
    second = scan_image(["Meter readings are taken every second month"])
    data = image_pdf([en_scan, second, en_scan])
    serial = extract_document(data, "three.pdf", CFG)
    pooled = extract_document(data, "three.pdf", IngestConfig(ocr_dpi=200, ocr_workers=2))
    assert [p.text for p in pooled] == [p.text for p in serial]
    assert [p.method for p in pooled] == ["ocr"] * 3


def test_ocr_timeout_is_a_document_error_when_no_page_survives(en_scan):
    with pytest.raises(DocumentError) as err:
        extract_document(png_bytes(en_scan), "slow.png", IngestConfig(ocr_timeout_s=0.001))
    assert err.value.code == "ocr_timeout" and "slow.png" in str(err.value)


def test_ocr_timeout_on_one_page_is_a_warning_when_text_pages_exist(en_scan):
    mixed = merge_pdfs([(text_pdf([TEXT_PAGE]), None), (image_pdf([en_scan]), None)])
    pages = extract_document(mixed, "mixed.pdf", IngestConfig(ocr_dpi=200, ocr_timeout_s=0.001))
    assert pages[0].method == "text" and pages[0].text
    assert pages[1].method == "ocr" and pages[1].text == ""
    assert any("timed out" in w for w in pages[1].warnings)


def test_missing_language_pack_is_ocr_unavailable(en_scan):
    with pytest.raises(DocumentError) as err:
        extract_document(png_bytes(en_scan), "scan.png", IngestConfig(ocr_languages="xyzzy"))
    assert err.value.code == "ocr_unavailable" and "apt-get install" in err.value.reason


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("", "no text layer"),
        ("7", "too short"),
        (
            "(cid:12)(cid:7)(cid:88) (cid:3)(cid:19)(cid:44) a few readable words on the page",
            "garbage",
        ),
        ("\ufffd\ufffd\ufffd\ufffd a few letters \ufffd\ufffd\ufffd\ufffd\ufffd", "garbage"),
        ("%%%% ### @@@ *** ((( ))) !!! ??? ;;; :::", "garbage"),
        ("A normal sentence from a born-digital page, 2024.", None),
        ("جدول التعرفة الجديدة للمياه لعام 2025", None),
    ],
)
def test_text_layer_rule(text, verdict):
    problem = text_layer_problem(text, min_chars=20, max_bad_ratio=0.1, min_alnum_ratio=0.35)
    if verdict is None:
        assert problem is None
    else:
        assert problem is not None and verdict in problem
