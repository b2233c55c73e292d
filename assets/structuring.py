"""Structuring: pages become chunks, entities, embeddings and a searchable LanceDB index."""

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg

from assets.partitions import documents_partitions
from llmops.lineage import code_version, resource_settings
from resources.documents import DocumentStoreResource
from resources.knowledge import EmbedderResource, StructuringResource, VectorStoreResource

LABELLED_QUESTIONS = Path(__file__).resolve().parents[1] / "configs" / "retrieval_eval.yaml"

ALL_DOCUMENTS = dg.AssetIn(
    partition_mapping=dg.AllPartitionMapping(),
    # A quarantined document has no output; the knowledge base is built from the others.
    metadata={"allow_missing_partitions": True},
)


def current_corpus(
    context: dg.AssetExecutionContext,
    chunks: dict[str, list[dict[str, Any]]],
    entities: dict[str, list[dict[str, Any]]],
) -> tuple[set[str], list[dict[str, Any]], dict[str, dict[str, list[str]]]]:
    """(current document ids, their chunks, entities by chunk id) from all stored partitions.

    Stored outputs of superseded versions stay on disk; only current partitions count.
    """
    current = set(context.instance.get_dynamic_partitions(documents_partitions.name))
    rows = [c for doc_id, doc_chunks in chunks.items() if doc_id in current for c in doc_chunks]
    by_chunk = {
        e["chunk_id"]: e["entities"]
        for doc_id, doc_entities in entities.items()
        if doc_id in current
        for e in doc_entities
    }
    return current, rows, by_chunk


def entity_versions(
    context: dg.AssetExecutionContext, entities: dict[str, list[dict[str, Any]]]
) -> dict[str, str]:
    """chunk_id -> extractor version of the current documents' stored entities."""
    current = set(context.instance.get_dynamic_partitions(documents_partitions.name))
    return {
        e["chunk_id"]: e.get("entities_version") or ""
        for doc_id, doc_entities in entities.items()
        if doc_id in current
        for e in doc_entities
    }


@dg.asset(
    partitions_def=documents_partitions,
    group_name="structuring",
    kinds={"python", "parquet"},
    code_version=code_version(
        "llmops.chunking", settings=resource_settings("structuring", "embedder")
    ),
)
def chunks(
    context: dg.AssetExecutionContext,
    extracted_pages: list[dict[str, Any]],
    structuring: StructuringResource,
    embedder: EmbedderResource,
) -> list[dict[str, Any]]:
    """Structure-aware chunks bounded by the embedder's own token count, with stable ids."""
    from llmops.chunking import chunk_pages

    out = chunk_pages(
        extracted_pages,
        count_tokens=embedder.embedder.count_tokens,
        max_tokens=structuring.max_tokens,
        overlap_tokens=structuring.overlap_tokens,
    )
    rows = [c.to_dict() for c in out]
    tokens = [r["token_count"] for r in rows] or [0]
    context.add_output_metadata(
        {
            "chunks": len(rows),
            "table_chunks": sum(r["kind"] == "table" for r in rows),
            "tokens_max": max(tokens),
            "tokens_mean": round(sum(tokens) / len(tokens), 1),
            "headings": len({r["heading"] for r in rows if r["heading"]}),
        }
    )
    return rows


@dg.asset(
    partitions_def=documents_partitions,
    group_name="structuring",
    kinds={"python", "parquet"},
    code_version=code_version("llmops.entities", "llmops.chunking", "llmops.lineage"),
)
def entities(
    context: dg.AssetExecutionContext,
    chunks: list[dict[str, Any]],
    extracted_pages: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Dates, money, percentages, contacts and names per chunk (English and Arabic), and the
    document-level summary (title, language, pages, entity counts) for semantic indexing."""
    from llmops.chunking import document_metadata
    from llmops.entities import entity_counts, extract_entities, get_ner_backend
    from llmops.lineage import entities_version

    backend = get_ner_backend("auto")
    version = entities_version(backend.name)
    rows = [
        {
            "chunk_id": c["chunk_id"],
            "doc_id": c["doc_id"],
            "entities": extract_entities(c["text"], c["language"], backend),
            # stored with the chunk in LanceDB: a new extractor rewrites older rows' entities
            "entities_version": version,
        }
        for c in chunks
    ]
    counts = entity_counts([r["entities"] for r in rows])
    document = document_metadata(
        context.partition_key, extracted_pages, chunks, [r["entities"] for r in rows]
    )
    context.add_output_metadata(
        {
            **{f"count_{k}": v for k, v in sorted(counts.items())},
            "document": dg.MetadataValue.json(document),
        }
    )
    return rows


@dg.asset(
    ins={"chunks": ALL_DOCUMENTS, "entities": ALL_DOCUMENTS},
    group_name="structuring",
    kinds={"lancedb", "sentence-transformers"},
    code_version=code_version(
        "llmops.embedding",
        "llmops.vectorstore",
        settings=resource_settings("embedder", "vector_store"),
    ),
    # One writer at a time: two runs' concurrent merge_insert on chunk_id both insert the same
    # new ids (duplicate rows). dagster.yaml's `pools.default_limit: 1` gives this pool 1 slot.
    pool="knowledge_base",
)
def chunk_embeddings(
    context: dg.AssetExecutionContext,
    chunks: dict[str, list[dict[str, Any]]],
    entities: dict[str, list[dict[str, Any]]],
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
    docs: DocumentStoreResource,
) -> dg.MaterializeResult:
    """The knowledge base: embeds only new chunks, drops stale documents' rows, rewrites the
    entities of rows extracted by an older extractor."""
    from llmops.embedding import refresh_store

    current, all_chunks, by_chunk = current_corpus(context, chunks, entities)
    model = embedder.embedder
    store = vector_store.open(dim=model.dim)
    started = time.perf_counter()
    # Rows of documents that changed (new key) or left the inbox go; so do chunks a re-chunked
    # document no longer produces (see refresh_store).
    stats = refresh_store(
        store,
        all_chunks,
        model,
        current,
        entities=by_chunk,
        entity_versions=entity_versions(context, entities),
        progress=lambda done, total: context.log.info(f"embedded {done}/{total} new chunks"),
    )
    removed = stats["removed_rows"]
    indexes = store.ensure_indexes(min_rows_for_ann=vector_store.ann_min_rows)
    elapsed = time.perf_counter() - started
    quarantined = list(docs.quarantine.entries())
    return dg.MaterializeResult(
        metadata={
            "lancedb_table_version": store.version,
            "rows": store.count(),
            "documents": len({c["doc_id"] for c in all_chunks}),
            "embedded_now": stats["embedded"],
            "reused": stats["skipped"],
            "entities_rewritten": stats["entities_rewritten"],
            "indexes": dg.MetadataValue.json(indexes),
            "removed_rows": removed,
            "model_id": model.model_id,
            "dim": model.dim,
            "chunks_per_s": round(stats["embedded"] / elapsed, 1) if stats["embedded"] else None,
            "uri": store.uri,
            "languages": dict(Counter(c["language"] for c in all_chunks)),
            "quarantined_documents": dg.MetadataValue.md(_quarantine_table(quarantined)),
        },
        data_version=dg.DataVersion(f"{store.uri}@{store.version}"),
    )


def _quarantine_table(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "No document quarantined."
    from llmops.text import markdown_table

    rows = [["document", "status", "code", "reason"]]
    rows += [[e["name"], e.get("status", "open"), e["code"], e["reason"]] for e in entries[-50:]]
    return markdown_table(rows)


@dg.asset(
    deps=[chunk_embeddings],
    group_name="structuring",
    kinds={"lancedb"},
    # the labelled questions are part of what it measures: editing them marks it stale
    code_version=code_version(
        "llmops.retrieval_eval",
        "llmops.vectorstore",
        settings=hashlib.sha256(LABELLED_QUESTIONS.read_bytes()).hexdigest(),
    ),
)
def retrieval_evaluation(
    context: dg.AssetExecutionContext,
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
) -> dg.MaterializeResult:
    """hit@5 and MRR of vector, full-text and hybrid search on the labelled questions whose
    documents are indexed: a regression here means retrieval for RAG got worse."""
    from llmops.retrieval_eval import evaluate_retrieval, format_table, load_labelled

    model = embedder.embedder
    store = vector_store.open(dim=model.dim)
    report = evaluate_retrieval(store, model, load_labelled(), k=5)
    meta: dict[str, Any] = {
        "lancedb_table_version": store.version,
        "questions_scored": report["hybrid"]["n"],
        "questions_unresolved": report["hybrid"]["unresolved"],
        "table": dg.MetadataValue.md(format_table(report)),
    }
    for mode, scores in report.items():
        meta[f"{mode}_hit_at_5"] = round(scores["hit@5"], 4)
        meta[f"{mode}_mrr"] = round(scores["mrr"], 4)
    return dg.MaterializeResult(metadata=meta)
