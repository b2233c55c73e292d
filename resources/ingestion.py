"""Extraction and OCR settings; fails at start-up when tesseract or a language pack is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from llmops.ingestion import IngestConfig


class IngestionResource(dg.ConfigurableResource):
    ocr_languages: str = "eng+ara"
    ocr_dpi: int = 300
    ocr_timeout_s: float = 120.0
    ocr_workers: int = 1
    page_workers: int = 1  # processes for the text layer of one long PDF
    max_file_mb: float = 200.0
    pdf_password: str | None = None  # set with {env: LLMOPS_PDF_PASSWORD}, never in plain text
    ocr_figures: bool = True
    figure_min_confidence: float = 70.0
    remove_tatweel: bool = True
    remove_diacritics: bool = False
    unify_letters: bool = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A missing tesseract should stop the run before any document is touched, with the
        # command that fixes it, rather than quarantine every scanned page one by one.
        from llmops.ocr import check_tesseract

        check_tesseract(self.ocr_languages)

    def config(self) -> IngestConfig:
        from llmops.ingestion import IngestConfig

        return IngestConfig.from_dict(
            {
                "ocr_languages": self.ocr_languages,
                "ocr_dpi": self.ocr_dpi,
                "ocr_timeout_s": self.ocr_timeout_s,
                "ocr_workers": self.ocr_workers,
                "page_workers": self.page_workers,
                "max_file_mb": self.max_file_mb,
                "pdf_password": self.pdf_password,
                "ocr_figures": self.ocr_figures,
                "figure_min_confidence": self.figure_min_confidence,
                "arabic": {
                    "remove_tatweel": self.remove_tatweel,
                    "remove_diacritics": self.remove_diacritics,
                    "unify_letters": self.unify_letters,
                },
            }
        )
