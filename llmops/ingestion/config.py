"""Ingestion settings: one dataclass, buildable from the YAML configs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llmops.arabic import ArabicConfig


@dataclass(frozen=True)
class IngestConfig:
    """Extraction and OCR knobs.

    The text-layer thresholds decide when a PDF page's own text is trusted and when the page is
    rendered and OCR'd instead (see :func:`llmops.ingestion.quality.text_layer_problem`):

    * ``min_text_chars``: fewer non-space characters than this on a page that carries an image
      means "no usable text layer" (a scan, perhaps with a stamped page number);
    * ``max_bad_char_ratio``: share of undecodable glyphs (``(cid:N)``, U+FFFD, private-use and
      control characters) above which the layer is garbage;
    * ``min_alnum_ratio``: share of letters/digits among non-space characters below which the
      layer is garbage (symbol soup from a broken font encoding).

    ``ocr_figures`` OCRs large images on born-digital pages (a scanned letter pasted into a
    report) and keeps what tesseract reads with at least ``figure_min_confidence``; photos and
    charts give low-confidence fragments and are left out.

    ``page_workers`` processes read the text layer of one PDF's pages when it has at least
    4 pages per worker (see :func:`llmops.ingestion.pdf.text_layer_pages`); ``ocr_workers`` do
    the same for scanned pages.

    ``detect_unruled_tables`` adds tables without ruling lines (aligned columns over >= 3 rows,
    accepted by strict rules in :func:`llmops.ingestion.pdf.find_unruled_tables`).
    """

    ocr_languages: str = "eng+ara"
    ocr_dpi: int = 300
    ocr_timeout_s: float = 120.0
    ocr_workers: int = 1
    page_workers: int = 1
    max_file_mb: float = 200.0
    pdf_password: str | None = None
    min_text_chars: int = 20
    max_bad_char_ratio: float = 0.10
    min_alnum_ratio: float = 0.35
    detect_tables: bool = True
    detect_unruled_tables: bool = True
    detect_columns: bool = True
    ocr_figures: bool = True
    figure_min_confidence: float = 70.0
    arabic: ArabicConfig = field(default_factory=ArabicConfig)

    def __post_init__(self) -> None:
        checks = {
            "ocr_dpi": self.ocr_dpi > 0,
            "ocr_timeout_s": self.ocr_timeout_s > 0,
            "ocr_workers": self.ocr_workers >= 1,
            "page_workers": self.page_workers >= 1,
            "max_file_mb": self.max_file_mb > 0,
            "min_text_chars": self.min_text_chars >= 0,
            "max_bad_char_ratio": 0 <= self.max_bad_char_ratio <= 1,
            "min_alnum_ratio": 0 <= self.min_alnum_ratio <= 1,
            "figure_min_confidence": 0 <= self.figure_min_confidence <= 100,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"IngestConfig: invalid value for {', '.join(bad)}: {self}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | IngestConfig | None) -> IngestConfig:
        """Build from YAML/JSON; unknown keys are rejected so a typo does not silently vanish."""
        if data is None:
            return cls()
        if isinstance(data, IngestConfig):
            return data
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"IngestConfig: unknown key(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "arabic" in values:
            values["arabic"] = ArabicConfig.from_dict(values["arabic"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pdf_password"] = None if self.pdf_password is None else "***"
        return out

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)
