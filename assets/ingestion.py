"""Ingestion: inbox files become immutable raw documents and clean, per-page records."""

from collections import Counter
from typing import Any

import dagster as dg

from assets.partitions import documents_partitions
from llmops.lineage import code_version, resource_settings
from resources.documents import DocumentStoreResource
from resources.ingestion import IngestionResource

# The settings that shape the pages; worker counts only change how fast they come.
_SETTINGS = {
    k: v
    for k, v in resource_settings("ingestion")["ingestion"].items()
    if k not in ("ocr_workers", "page_workers")
}


def _reject(
    context: dg.AssetExecutionContext, docs: DocumentStoreResource, name: str, sha256: str, err: Any
) -> dg.Failure:
    """Quarantine a bad document and fail only its own partition, with the reason."""
    docs.quarantine.record(
        name=name, sha256=sha256, code=err.code, reason=err.reason, run_id=context.run.run_id
    )
    return dg.Failure(
        description=str(err),
        metadata={"document": name, "code": err.code, "reason": err.reason, "sha256": sha256},
        allow_retries=False,
    )


@dg.asset(
    partitions_def=documents_partitions,
    group_name="ingestion",
    kinds={"python", "parquet"},
    code_version=code_version("llmops.ingestion", settings=_SETTINGS),
)
def raw_documents(
    context: dg.AssetExecutionContext, docs: DocumentStoreResource, ingestion: IngestionResource
) -> list[dict[str, Any]]:
    """The document as received: type detected from its bytes, an immutable stored copy."""
    from llmops.ingestion import DocumentError, inspect_document
    from llmops.ingestion.docstore import check_listed_size

    inbox_file = docs.locate(context.partition_key)  # index lookup, not an inbox re-hash
    cfg = ingestion.config()
    try:
        check_listed_size(inbox_file, cfg.max_bytes)  # before reading it all into memory
    except DocumentError as err:
        raise _reject(context, docs, inbox_file.name, inbox_file.sha256, err) from err
    data = docs.read(inbox_file)  # must still hash to the partition key
    try:
        info = inspect_document(data, inbox_file.name, cfg)
    except DocumentError as err:
        raise _reject(context, docs, inbox_file.name, inbox_file.sha256, err) from err
    stored = docs.document_store.put(data)
    record = {**info.to_dict(), "source": inbox_file.path, "stored_at": stored}
    context.add_output_metadata(
        {
            "name": info.name,
            "kind": info.kind,
            "mime_type": info.mime_type,
            "pages": info.page_count,
            "size_bytes": info.size_bytes,
            "sha256": info.sha256,
            "stored_at": dg.MetadataValue.path(stored),
        }
    )
    return [record]


@dg.asset(
    partitions_def=documents_partitions,
    group_name="ingestion",
    kinds={"pdfplumber", "tesseract", "parquet"},
    code_version=code_version(
        "llmops.ingestion", "llmops.ocr", "llmops.arabic", settings=_SETTINGS
    ),
)
def extracted_pages(
    context: dg.AssetExecutionContext,
    raw_documents: list[dict[str, Any]],
    docs: DocumentStoreResource,
    ingestion: IngestionResource,
) -> list[dict[str, Any]]:
    """One record per page: text, tables, extraction method, OCR confidence, language."""
    from llmops.ingestion import DocumentError, extract_document

    doc = raw_documents[0]
    data = docs.document_store.get(doc["sha256"])
    try:
        pages = extract_document(data, doc["name"], ingestion.config(),
                                 on_page=lambda i, n: context.log.info(f"OCR page {i}/{n}"))
    except DocumentError as err:
        raise _reject(context, docs, doc["name"], doc["sha256"], err) from err
    if doc["sha256"] in docs.quarantine.open_entries():  # rejected before, ingested now
        docs.quarantine.record_resolved(doc["sha256"], doc["name"], run_id=context.run.run_id)
    rows = [p.to_dict() for p in pages]
    methods = Counter(r["method"] for r in rows)
    languages = Counter(r["language"] for r in rows)
    confidences = [r["ocr_confidence"] for r in rows if r["ocr_confidence"] is not None]
    context.add_output_metadata(
        {
            "document": doc["name"],
            "pages": len(rows),
            "pages_text_layer": methods.get("text", 0),
            "pages_ocr": methods.get("ocr", 0),
            "mean_ocr_confidence": round(sum(confidences) / len(confidences), 1)
            if confidences
            else None,
            "languages": dict(languages),
            "tables": sum(len(r["tables"]) for r in rows),
            "chars": sum(r["char_count"] for r in rows),
            "warnings": dg.MetadataValue.json([w for r in rows for w in r["warnings"]][:50]),
            "preview": dg.MetadataValue.md(_preview(rows)),
        }
    )
    return rows


def _preview(rows: list[dict[str, Any]], chars: int = 400) -> str:
    from llmops.text import markdown_table

    table = [["page", "method", "lang", "chars", "start"]]
    for r in rows[:10]:
        start = r["text"][:chars]
        table.append([r["page_number"], r["method"], r["language"], r["char_count"], start])
    return markdown_table(table, max_cell_chars=120)
