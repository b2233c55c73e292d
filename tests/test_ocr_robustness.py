"""OCR on the scans real users send: tesseract failures, quarter-turned pages, mixed languages."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from PIL import Image

from llmops import ocr
from llmops.ingestion import DocumentError, IngestConfig, extract_document
from llmops.ingestion.errors import OcrError
from llmops.ingestion.scan import ocr_many
from llmops.ocr import OcrConfig, OcrUnavailable, cer_counts, check_tesseract, ocr_image
from tests.fixtures.ingestion_docs import has_raqm, png_bytes, scan_image

EN_LINES = [
    "Invoice number 4471 for pump maintenance",
    "Total due within thirty days of receipt",
    "Questions go to the harbour office at noon",
]
MIXED_AR = [
    "تقرير هيئة المياه السنوي للعام الماضي",
    "ارتفع استهلاك المياه في المدينة Microsoft كثيرا",
    "وقالت الهيئة إن نظام Dagster يعمل بشكل جيد",
    "وانخفضت نسبة الفاقد في الشبكة",
]


@pytest.fixture(scope="module")
def tesseract() -> str:
    try:
        return check_tesseract("eng+ara")
    except OcrUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def en_scan() -> Image.Image:
    return scan_image(EN_LINES, size=(1700, 600))


# --------------------------------------------------------------------------- tesseract failures


def _failing(message: str, status: int = 1):
    import pytesseract

    def run(*args, **kwargs):
        raise pytesseract.TesseractError(status, message)

    return run


def test_tesseract_error_is_an_ocr_error(tesseract: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytesseract

    monkeypatch.setattr(pytesseract, "image_to_data", _failing("Failed loading language 'ara'"))
    with pytest.raises(OcrError, match="Failed loading language") as err:
        ocr_image(scan_image(EN_LINES[:1]), "eng", OcrConfig(orientation="none"))
    assert err.value.code == "ocr_failed"
    assert isinstance(err.value, DocumentError)


def test_crash_quarantines_the_document_with_page_and_reason(
    tesseract: str, en_scan: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytesseract

    # a tesseract killed by a signal: pytesseract reports a negative status
    monkeypatch.setattr(pytesseract, "image_to_data", _failing("Segmentation fault", -11))
    with pytest.raises(DocumentError) as err:
        extract_document(png_bytes(en_scan), "crash.png", IngestConfig(ocr_dpi=200))
    assert err.value.code == "ocr_failed"
    assert "Segmentation fault" in err.value.reason and "page 1" in str(err.value)


def test_ocr_error_names_the_page_number_and_survives_pickling(
    en_scan: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = en_scan.copy()

    def fake_ocr(img, languages=None, cfg=None):
        if img is bad:
            raise OcrError(None, "tesseract (eng) failed: read error")
        return ocr.OcrResult(text="fine", confidence=90.0)

    monkeypatch.setattr(ocr, "ocr_image", fake_ocr)
    cfg = IngestConfig(ocr_dpi=200, ocr_workers=1)
    assert [o.text for o in ocr_many([en_scan], cfg, 1)] == ["fine"]
    with pytest.raises(OcrError) as err:
        ocr_many([en_scan, bad], cfg, 2, page_numbers=[3, 7])
    assert err.value.page == 7
    with pytest.raises(OcrError) as err2:
        ocr_many([en_scan, bad], cfg, 2)  # no numbers: position among the OCR'd pages
    assert err2.value.page == 2
    named = err.value.with_source("scan.pdf")
    assert str(named) == "scan.pdf: OCR failed on page 7: tesseract (eng) failed: read error"
    back = pickle.loads(pickle.dumps(named))  # crosses the OCR worker-pool boundary
    assert isinstance(back, OcrError) and str(back) == str(named) and back.code == "ocr_failed"


# --------------------------------------------------------------------------- orientation


def _corpus_lines(corpus_dir: Path, n: int) -> list[Path]:
    return sorted((corpus_dir / "arabic-ocr-lines").glob("*.png"))[:n]


@pytest.mark.parametrize("quarter", [90, 180, 270])
def test_rotated_english_page_is_turned_back(
    tesseract: str, en_scan: Image.Image, quarter: int
) -> None:
    truth = "\n".join(EN_LINES)
    upright = ocr_image(en_scan, "eng")
    turned = ocr_image(en_scan.rotate(quarter, expand=True, fillcolor=235), "eng")
    assert upright.rotation == 0
    assert turned.rotation == quarter  # PIL turns counter-clockwise; OCR turns it back
    assert any(f"turned {quarter} degrees" in w for w in turned.warnings)
    up_edits, chars = cer_counts(upright.text, truth)
    edits, _ = cer_counts(turned.text, truth)
    assert edits <= up_edits + 1 and edits / chars < 0.05, turned.text


@pytest.mark.slow
def test_rotated_corpus_lines_cer_not_worse_than_upright(corpus_dir: Path, tesseract: str) -> None:
    """Real Arabic print, every quarter turn: same CER as upright (OSD is unsure on one line,
    so the two readings along the line's axis are compared by confidence)."""
    totals: dict[int, list[int]] = {}
    for png in _corpus_lines(corpus_dir, 4):
        truth = png.with_name(png.stem + ".gt.txt").read_text(encoding="utf-8")
        with Image.open(png) as img:
            img.load()
            for quarter in (0, 90, 180, 270):
                res = ocr_image(img.rotate(quarter, expand=True, fillcolor=255), "ara")
                assert res.rotation == quarter, (png.name, quarter)
                edits, chars = cer_counts(res.text, truth)
                acc = totals.setdefault(quarter, [0, 0])
                acc[0] += edits
                acc[1] += chars
    upright = totals[0][0] / totals[0][1]
    for quarter in (90, 180, 270):
        assert totals[quarter][0] / totals[quarter][1] <= upright + 1e-9, totals


def test_orientation_none_skips_osd(tesseract: str, en_scan: Image.Image) -> None:
    res = ocr_image(en_scan.rotate(180), "eng", OcrConfig(orientation="none"))
    assert res.rotation == 0
    with pytest.raises(ValueError, match="orientation"):
        ocr_image(en_scan, "eng", OcrConfig(orientation="sideways"))


def test_osd_failure_falls_back_to_reading(
    tesseract: str, en_scan: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytesseract

    monkeypatch.setattr(pytesseract, "image_to_osd", _failing("Too few characters"))
    res = ocr_image(en_scan.rotate(180), "eng")
    assert res.rotation == 180
    edits, chars = cer_counts(res.text, "\n".join(EN_LINES))
    assert edits / chars < 0.05


def test_text_axis() -> None:
    import numpy as np

    gray = np.asarray(scan_image(EN_LINES, size=(1700, 600), noise=False))
    assert ocr.text_axis(gray) == "h"
    assert ocr.text_axis(np.rot90(gray)) == "v"
    assert ocr.turn(gray, 360) is gray
    assert ocr.turn(ocr.turn(gray, 90), 270).tolist() == gray.tolist()


# --------------------------------------------------------------------------- mixed languages


def test_english_words_on_an_arabic_page_are_kept(tesseract: str) -> None:
    if not has_raqm():
        pytest.skip("PIL without raqm cannot shape Arabic for the synthetic scan")
    res = ocr_image(scan_image(MIXED_AR, arabic=True), "eng+ara")
    assert res.languages == "ara"  # Arabic-majority: the Arabic-only re-read was kept ...
    assert "Microsoft" in res.text and "Dagster" in res.text  # ... with the English words
    assert res.language_hint == "ar"
    edits, chars = cer_counts(res.text, "\n".join(MIXED_AR))
    assert edits / chars < 0.05, res.text


def test_keep_latin_runs_merges_by_position() -> None:
    def data(words: list[tuple[str, float, int, int]]) -> dict:
        keys = ("text", "conf", "block_num", "par_num", "line_num", "left", "top", "width")
        rows = [(w, c, 1, 1, line, x, 10 + 40 * line, 80) for w, c, x, line in words]
        out = {k: [r[i] for r in rows] for i, k in enumerate(keys)}
        out["height"] = [30] * len(rows)
        return out

    arabic = data([("ثلاث", 90, 500, 1), ("ىلنا", 40, 300, 1), ("واحد", 90, 100, 1)])
    mixed = data([("ثلاث", 80, 500, 1), ("Hello", 92, 300, 1), ("world", 91, 390, 1),
                  ("..", 30, 100, 1)])  # fmt: skip
    merged = ocr.keep_latin_runs(arabic, mixed)
    assert merged["text"] == ["ثلاث", "Hello world", "واحد"]
    # a Latin word the Arabic reading dropped altogether is inserted right to left
    arabic = data([("ثلاث", 90, 500, 1), ("واحد", 90, 100, 1)])
    merged = ocr.keep_latin_runs(arabic, data([("Python", 95, 300, 1)]))
    assert merged["text"] == ["ثلاث", "Python", "واحد"]
    # low-confidence Latin look-alikes of Arabic marks are not kept
    assert ocr.keep_latin_runs(arabic, data([("Il", 40, 300, 1)]))["text"] == ["ثلاث", "واحد"]


def test_page_record_carries_the_rotation() -> None:
    from llmops.ingestion.records import PageRecord

    page = PageRecord("d-1", 1, "text", method="ocr", rotation=270)
    assert PageRecord.from_dict(page.to_dict()).rotation == 270
    assert PageRecord.from_dict({**page.to_dict(), "rotation": float("nan")}).rotation == 0
    assert PageRecord.from_dict({"doc_id": "d", "page_number": 1, "text": ""}).rotation == 0
    with pytest.raises(ValueError, match="rotation"):
        PageRecord("d-1", 1, "text", rotation=45)
