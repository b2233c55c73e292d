"""Entry points: what is this document (``inspect_document``), and its pages (``extract_document``).

Both take the raw bytes and the original file name; every failure is a
:class:`~llmops.ingestion.errors.DocumentError` naming the file, so the caller can quarantine
the one document and carry on with the batch.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from llmops.arabic import detect_language, normalize_arabic
from llmops.ingestion.config import IngestConfig
from llmops.ingestion.detect import Detected, detect_type, document_id_from_hash, sha256_hex
from llmops.ingestion.errors import DocumentError, OcrError
from llmops.ingestion.office import TextPage, extract_docx, extract_html, extract_txt
from llmops.ingestion.records import DocumentInfo, PageRecord, TableRecord
from llmops.ingestion.scan import OcrOutcome, ensure_ocr_available, iter_image_frames, ocr_many

if TYPE_CHECKING:
    from llmops.ingestion.pdf import PdfPageResult

_ANCHOR_RE = re.compile("\\s*\ue000(\\d+)\ue001\\s*")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
# Decompression-bomb guard: a 300 dpi A0 scan is ~140 MP; anything far above is an attack or
# an error, and PIL's own warning threshold (89 MP) is below legitimate large scans.
_MAX_IMAGE_PIXELS = 400_000_000


def _check_size(data: bytes, name: str, cfg: IngestConfig) -> None:
    if not data:
        raise DocumentError(name, "file is empty (0 bytes)", "empty")
    if len(data) > cfg.max_bytes:
        raise DocumentError(
            name,
            f"file is {len(data) / 2**20:.1f} MB, above the max_file_mb limit of "
            f"{cfg.max_file_mb:g} MB",
            "too_large",
        )


def _open_image(data: bytes, name: str) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = _MAX_IMAGE_PIXELS
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DocumentError(name, f"malformed image: {err}", "malformed") from err
    except Image.DecompressionBombError as err:
        raise DocumentError(name, f"image too large to OCR: {err}", "too_large") from err
    return img


def _page_count(data: bytes, name: str, detected: Detected, cfg: IngestConfig) -> int:
    if detected.kind == "pdf":
        from llmops.ingestion.pdf import check_geometry, open_pdf

        with open_pdf(data, name, cfg) as pdf:
            check_geometry(pdf, name)
            return len(pdf.pages)
    if detected.kind == "image":
        return int(getattr(_open_image(data, name), "n_frames", 1))
    if detected.kind == "txt":
        return len(extract_txt(data, name)[0])
    return 1


def inspect_document(data: bytes, name: str, cfg: IngestConfig | None = None) -> DocumentInfo:
    """Identify and validate a document cheaply (no text extraction, no OCR)."""
    cfg = cfg or IngestConfig()
    _check_size(data, name, cfg)
    detected = detect_type(data, name)
    digest = sha256_hex(data)
    return DocumentInfo(
        doc_id=document_id_from_hash(digest, name),
        name=name,
        sha256=digest,
        size_bytes=len(data),
        mime_type=detected.mime_type,
        kind=detected.kind,
        page_count=_page_count(data, name, detected, cfg),
    )


# --------------------------------------------------------------------------- finalisation


def _place_tables(text: str, tables: list[TableRecord]) -> str:
    """Remove table anchors from the text and record where each table stood."""
    pieces: list[str] = []
    length = 0
    last = 0
    for m in _ANCHOR_RE.finditer(text):
        chunk = text[last : m.start()]
        pieces.append(chunk)
        length += len(chunk)
        sep = "\n\n" if length and m.end() < len(text) else ""
        pieces.append(sep)
        length += len(sep)
        index = int(m.group(1))
        if index < len(tables):
            tables[index].offset = length
        last = m.end()
    pieces.append(text[last:])
    out = "".join(pieces)
    for table in tables:
        if table.offset is None and table.markdown:
            found = out.find(table.markdown)
            table.offset = found if found >= 0 else None
    return out


def _finish(
    doc_id: str,
    number: int,
    text: str,
    tables: list[TableRecord],
    cfg: IngestConfig,
    method: str = "text",
    confidence: float | None = None,
    warnings: list[str] | None = None,
) -> PageRecord:
    """Normalise (NFKC, Arabic folds), place tables, detect the language: one place for all."""
    text = normalize_arabic(text, cfg.arabic)
    norm_tables = [
        replace(t, rows=[[normalize_arabic(c, cfg.arabic) for c in r] for r in t.rows], markdown="")
        for t in tables
    ]
    for t in norm_tables:
        t.__post_init__()
    text = _BLANK_LINES_RE.sub("\n\n", "\n".join(ln.rstrip() for ln in text.split("\n"))).strip()
    text = _place_tables(text, norm_tables)  # last: offsets refer to the final text
    sample = text if len(text) >= 200 else " ".join([text, *(t.markdown for t in norm_tables)])
    return PageRecord(
        doc_id=doc_id,
        page_number=number,
        text=text,
        tables=norm_tables,
        method=method,
        ocr_confidence=confidence,
        language=detect_language(sample),
        char_count=len(text),
        warnings=list(warnings or []),
    )


def _ocr_record(doc_id: str, number: int, outcome: OcrOutcome, cfg: IngestConfig, pre: list[str]):
    warnings = [*pre, *outcome.warnings]
    return _finish(doc_id, number, outcome.text, [], cfg, "ocr", outcome.confidence, warnings)


def _all_timed_out(outcomes: list[OcrOutcome], name: str, cfg: IngestConfig) -> None:
    if outcomes and all(o.timed_out for o in outcomes):
        raise DocumentError(
            name,
            f"OCR timed out on every page that needed it ({len(outcomes)} page(s), "
            f"ocr_timeout_s={cfg.ocr_timeout_s:g}); raise ocr_timeout_s or lower ocr_dpi",
            "ocr_timeout",
        )


def _squash(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def merge_text_layer(ocr_text: str, layer_text: str) -> str:
    """OCR text plus the lines of the digital text layer the OCR did not already read.

    A stamp ("CONFIDENTIAL  Bates ABC-000123") on a scan is rendered into the page image too,
    so OCR usually reads it: a layer line whose letters and digits appear (nearly) verbatim in
    the OCR text is a duplicate; any other line is appended, in its own reading order.
    """
    from rapidfuzz import fuzz

    ocr_flat = _squash(ocr_text)
    extra = []
    for line in layer_text.split("\n"):
        flat = _squash(line)
        if not flat:
            continue
        if flat in ocr_flat or (len(flat) >= 8 and fuzz.partial_ratio(flat, ocr_flat) >= 90):
            continue
        extra.append(line.strip())
    if not extra:
        return ocr_text
    return "\n\n".join(t for t in (ocr_text.strip(), "\n".join(extra)) if t)


PageProgress = Callable[[int, int], None]


def _ocr_named(
    images: Iterable[Image.Image], cfg: IngestConfig, numbers: list[int], name: str,
    on_page: PageProgress | None = None,
) -> list[OcrOutcome]:
    """OCR pages; a tesseract failure (not a timeout) names the file and the real page number,
    so the quarantine record says which document and page broke and why."""
    try:
        return ocr_many(images, cfg, len(numbers), page_numbers=numbers, on_page=on_page)
    except OcrError as err:
        close = getattr(images, "close", None)
        if close is not None:
            close()  # a render generator: release its pdfium document now
        raise err.with_source(name) from err


# --------------------------------------------------------------------------- per kind


def _figure_texts(
    data: bytes, name: str, results: list[PdfPageResult], cfg: IngestConfig
) -> dict[int, tuple[list[str], list[str]]]:
    """OCR of the figures on text-layer pages: page -> (texts kept, warnings).

    Best effort: a figure that cannot be read (no tesseract, a tesseract error, a timeout, low
    confidence) costs a page warning, never the document.
    """
    from llmops.ingestion.pdf import looks_like_text, render_regions

    regions = [(r.page_number, box) for r in results if not r.needs_ocr for box in r.figures]
    out: dict[int, tuple[list[str], list[str]]] = {n: ([], []) for n, _ in regions}
    if not regions:
        return out
    read: list[tuple[int, tuple[float, float, float, float]]] = []

    def text_like() -> Iterator[Image.Image]:  # photos are skipped before any OCR
        for region, img in zip(regions, render_regions(data, regions, cfg, name), strict=True):
            if looks_like_text(img):
                read.append(region)
                yield img

    try:
        ensure_ocr_available(cfg, name)
        outcomes = ocr_many(text_like(), cfg, len(regions))
    except (DocumentError, OcrError) as err:
        for number, _ in regions:
            out[number][1].append(f"figure not OCR'd: {err}")
        return out
    for (number, box), outcome in zip(read, outcomes, strict=True):
        where = f"figure at ({box[0]:.0f}, {box[1]:.0f}) pt"
        words = [w for w in outcome.text.split() if any(ch.isalpha() for ch in w)]
        conf = outcome.confidence or 0.0
        if outcome.timed_out or len(words) < 2 or conf < cfg.figure_min_confidence:
            if words:
                out[number][1].append(
                    f"{where}: OCR text left out ({len(words)} words, confidence {conf:.0f} < "
                    f"{cfg.figure_min_confidence:g})"
                )
            continue
        out[number][0].append(outcome.text.strip())
        out[number][1].append(f"{where}: OCR'd, {len(words)} words, confidence {conf:.0f}")
    return out


def _extract_pdf(
    data: bytes, name: str, doc_id: str, cfg: IngestConfig, on_page: PageProgress | None = None
) -> list[PageRecord]:
    from llmops.ingestion.pdf import render_pages, text_layer_pages

    results = text_layer_pages(data, name, cfg)
    figures = _figure_texts(data, name, results, cfg)
    records: dict[int, PageRecord] = {}
    scanned = [r for r in results if r.needs_ocr]
    for r in results:
        if not r.needs_ocr:
            texts, notes = figures.get(r.page_number, ([], []))
            text = "\n\n".join(t for t in (r.text, *texts) if t.strip())
            records[r.page_number] = _finish(doc_id, r.page_number, text, r.tables, cfg,
                                             warnings=[*r.warnings, *notes])  # fmt: skip
    if scanned:
        ensure_ocr_available(cfg, name)
        numbers = [r.page_number for r in scanned]
        outcomes = _ocr_named(
            render_pages(data, numbers, cfg, name), cfg, numbers, name, on_page
        )
        if len(records) == 0:
            _all_timed_out(outcomes, name, cfg)
        for r, outcome in zip(scanned, outcomes, strict=True):
            if r.keep_text:
                outcome = replace(outcome, text=merge_text_layer(outcome.text, r.keep_text))
            records[r.page_number] = _ocr_record(doc_id, r.page_number, outcome, cfg, r.warnings)
    return [records[n] for n in sorted(records)]


def _extract_image(
    data: bytes, name: str, doc_id: str, cfg: IngestConfig, on_page: PageProgress | None = None
) -> list[PageRecord]:
    img = _open_image(data, name)
    ensure_ocr_available(cfg, name)
    n = int(getattr(img, "n_frames", 1))
    outcomes = _ocr_named(iter_image_frames(img), cfg, list(range(1, n + 1)), name, on_page)
    _all_timed_out(outcomes, name, cfg)
    return [_ocr_record(doc_id, i, o, cfg, []) for i, o in enumerate(outcomes, start=1)]


def _text_records(doc_id: str, pages: list[TextPage], cfg: IngestConfig) -> list[PageRecord]:
    return [
        _finish(doc_id, i, p.text, p.tables, cfg, warnings=p.warnings)
        for i, p in enumerate(pages, start=1)
    ]


def extract_document(
    data: bytes, name: str, cfg: IngestConfig | None = None, on_page: PageProgress | None = None
) -> list[PageRecord]:
    """Pages of any supported document, in order, ready for chunking.

    ``on_page(done, total)`` is called after each OCR'd page (text layers need no progress).
    """
    cfg = cfg or IngestConfig()
    _check_size(data, name, cfg)
    detected = detect_type(data, name)
    doc_id = document_id_from_hash(sha256_hex(data), name)
    if detected.kind == "pdf":
        pages = _extract_pdf(data, name, doc_id, cfg, on_page)
    elif detected.kind == "image":
        pages = _extract_image(data, name, doc_id, cfg, on_page)
    elif detected.kind == "docx":
        pages = _text_records(doc_id, extract_docx(data, name), cfg)
    elif detected.kind == "html":
        pages = _text_records(doc_id, extract_html(data, name), cfg)
    else:
        txt_pages, encoding = extract_txt(data, name)
        pages = _text_records(doc_id, txt_pages, cfg)
        if encoding not in ("utf-8", "utf-8-sig", "ascii"):
            for p in pages:
                p.warnings.append(f"decoded from {encoding}")
    if not pages:
        raise DocumentError(name, "no pages could be extracted", "empty")
    return pages
