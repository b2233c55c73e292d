"""Ingestion: raw documents (PDF, scans, DOCX, TXT, HTML) -> clean per-page records.

Pure Python, no Dagster: the assets in ``assets/ingestion.py`` call :func:`inspect_document`
and :func:`extract_document`, and store documents with :mod:`llmops.ingestion.docstore`.
"""

from llmops.arabic import ArabicConfig
from llmops.ingestion.config import IngestConfig
from llmops.ingestion.detect import document_id, document_id_from_hash, slugify
from llmops.ingestion.documents import extract_document, inspect_document
from llmops.ingestion.errors import ERROR_CODES, DocumentError
from llmops.ingestion.records import DocumentInfo, PageRecord, TableRecord

__all__ = [
    "ERROR_CODES",
    "ArabicConfig",
    "DocumentError",
    "DocumentInfo",
    "IngestConfig",
    "PageRecord",
    "TableRecord",
    "document_id",
    "document_id_from_hash",
    "extract_document",
    "inspect_document",
    "slugify",
]
