"""The one exception ingestion raises for a bad document, with a machine-readable code.

Callers (the Dagster assets, the CLI) quarantine by ``code`` and show ``str(err)`` to people, so
every reason names the file and says what is wrong with it in words.
"""

from __future__ import annotations

from typing import Any

ERROR_CODES: frozenset[str] = frozenset(
    {
        "empty",
        "encrypted",
        "malformed",
        "unsupported",
        "too_large",
        "ocr_timeout",
        "ocr_unavailable",
        "ocr_failed",
    }
)


class DocumentError(Exception):
    """A document that cannot be ingested; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, source: str, reason: str, code: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown DocumentError code {code!r}; expected one of {ERROR_CODES}")
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str, str]]:
        # Errors cross process boundaries (OCR worker pools, Dagster step processes).
        return (DocumentError, (self.source, self.reason, self.code))

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason, "code": self.code}


class OcrError(DocumentError):
    """tesseract failed on a page for a reason other than a timeout (error exit, crash, missing
    language pack). Raised by :mod:`llmops.ocr`; a ``DocumentError`` with code ``ocr_failed`` so
    the caller quarantines the document with the reason instead of crashing the run.

    The OCR engine knows neither the file nor the page number: :mod:`llmops.ingestion.scan` adds
    the page (``with_page``) and a caller that knows the file name may add it (``with_source``).
    """

    def __init__(self, page: int | None, reason: str, source: str = "") -> None:
        self.page = page
        self.ocr_reason = reason
        self.file = source
        where = f"page {page}" if page is not None else "a page image"
        if source:
            super().__init__(source, f"OCR failed on {where}: {reason}", "ocr_failed")
        else:
            super().__init__(where, f"OCR failed: {reason}", "ocr_failed")

    def with_page(self, page: int) -> OcrError:
        """The same failure, located on ``page`` (1-based) of its document."""
        return OcrError(page, self.ocr_reason, self.file)

    def with_source(self, source: str) -> OcrError:
        """The same failure, naming the document file."""
        return OcrError(self.page, self.ocr_reason, source)

    def __reduce__(self) -> tuple[Any, ...]:
        return (OcrError, (self.page, self.ocr_reason, self.file))
