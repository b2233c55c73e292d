"""The one exception ingestion raises for a bad document, with a machine-readable code.

Callers (the Dagster assets, the CLI) quarantine by ``code`` and show ``str(err)`` to people, so
every reason names the file and says what is wrong with it in words.
"""

from __future__ import annotations

ERROR_CODES: frozenset[str] = frozenset(
    {
        "empty",
        "encrypted",
        "malformed",
        "unsupported",
        "too_large",
        "ocr_timeout",
        "ocr_unavailable",
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
