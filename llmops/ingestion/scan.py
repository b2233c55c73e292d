"""OCR of page images (scanned PDF pages, PNG/JPEG/TIFF) with a per-page timeout and a pool.

Pages scanned at a quarter turn are turned upright first (``OcrOutcome.rotation`` says by
how much). A page that times out becomes a page warning, not a failed document: the other pages
are still worth having, and the warning travels into the asset metadata. Only when *every*
OCR'd page of a
document times out does the caller raise ``DocumentError(code="ocr_timeout")``. Any other
tesseract failure raises :class:`~llmops.ingestion.errors.OcrError` (a ``DocumentError`` with
code ``ocr_failed``) naming the page, so the document is quarantined and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from llmops.ingestion.config import IngestConfig
from llmops.ingestion.errors import DocumentError, OcrError


@dataclass
class OcrOutcome:
    text: str = ""
    confidence: float | None = None
    warnings: list[str] = field(default_factory=list)
    timed_out: bool = False
    rotation: int = 0  # clockwise degrees the page was turned before OCR


def _ocr_config(cfg: IngestConfig):  # -> llmops.ocr.OcrConfig
    from llmops.ocr import OcrConfig

    return OcrConfig(
        languages=cfg.ocr_languages, dpi=cfg.ocr_dpi, timeout_s=cfg.ocr_timeout_s, arabic=cfg.arabic
    )


def ensure_ocr_available(cfg: IngestConfig, source: str) -> None:
    """Fail the document (not the run) with the install hint when tesseract cannot be used."""
    from llmops.ocr import OcrUnavailable, check_tesseract

    try:
        check_tesseract(cfg.ocr_languages)
    except (OcrUnavailable, ValueError) as err:
        raise DocumentError(source, f"needs OCR but {err}", "ocr_unavailable") from err


def ocr_one(img: Image.Image, cfg: IngestConfig) -> OcrOutcome:
    """OCR a single page image; a timeout becomes a flagged outcome instead of an exception."""
    from llmops.ocr import OcrTimeout, ocr_image

    try:
        res = ocr_image(img, cfg.ocr_languages, _ocr_config(cfg))
    except OcrTimeout as err:
        return OcrOutcome(warnings=[f"OCR timed out: {err}"], timed_out=True)
    return OcrOutcome(
        text=res.text,
        confidence=res.confidence,
        warnings=list(res.warnings),
        rotation=res.rotation,
    )


def ocr_many(
    images: Iterable[Image.Image],
    cfg: IngestConfig,
    n_pages: int,
    page_numbers: Sequence[int] | None = None,
    on_page: Callable[[int, int], None] | None = None,
) -> list[OcrOutcome]:
    """OCR page images in order, over ``cfg.ocr_workers`` processes when there is enough work.

    ``images`` is consumed lazily with at most ``2 * workers`` pages in flight, so a 500-page
    scan rendered at 300 dpi never sits in memory all at once. An :class:`OcrError` is re-raised
    with its page number (``page_numbers[i]``, or the position among the OCR'd pages).
    ``on_page(done, n_pages)`` runs after each page, so a long scan shows progress in the log.
    """
    numbers = list(page_numbers) if page_numbers is not None else None

    def located(err: OcrError, index: int) -> OcrError:
        return err.with_page(numbers[index] if numbers is not None else index + 1)

    from llmops.ocr import can_start_workers, ocr_process_pool

    workers = max(1, min(cfg.ocr_workers, n_pages)) if can_start_workers() else 1
    results: list[OcrOutcome] = []
    if workers == 1:
        for img in images:
            try:
                results.append(ocr_one(img, cfg))
                if on_page is not None:
                    on_page(len(results), n_pages)
            except OcrError as err:
                raise located(err, len(results)) from err
        return results
    with ocr_process_pool(workers) as pool:
        pending: list[Future[OcrOutcome]] = []
        try:
            for img in images:
                pending.append(pool.submit(ocr_one, img, cfg))
                if len(pending) >= 2 * workers:
                    results.append(pending.pop(0).result())
                    if on_page is not None:
                        on_page(len(results), n_pages)
            while pending:
                results.append(pending.pop(0).result())
                if on_page is not None:
                    on_page(len(results), n_pages)
        except OcrError as err:
            for f in pending:
                f.cancel()
            raise located(err, len(results)) from err
    return results


def iter_image_frames(img: Image.Image) -> Iterator[Image.Image]:
    """Every frame of a (possibly multi-page) image, as an independent copy."""
    n = getattr(img, "n_frames", 1)
    for i in range(n):
        img.seek(i)
        frame = img.copy()
        frame.info = dict(img.info)
        yield frame
