"""Asset checks at each hand-off, backed by Great Expectations suites in configs/expectations.

ERROR-severity checks are blocking: a failing one stops the downstream assets of the same run,
and the failed expectations are shown as a table in the UI.
"""

import warnings
from typing import Any

import dagster as dg

from assets.dataset import DATASET_CHECKS, instruction_dataset
from assets.ingestion import extracted_pages, raw_documents
from assets.partitions import documents_partitions
from assets.structuring import ALL_DOCUMENTS, chunk_embeddings, chunks
from resources.documents import DocumentStoreResource
from resources.knowledge import EmbedderResource, StructuringResource, VectorStoreResource
from resources.llm import DatasetBuilderResource

# Per-document (partitioned) checks are a Dagster preview feature we rely on deliberately.
warnings.filterwarnings(
    "ignore", message=".*partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)



def _result(result: Any, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=bool(result.success),
        severity=severity,
        metadata={
            **{k: v for k, v in result.statistics.items() if isinstance(v, (int, float, str))},
            "failed_expectations": dg.MetadataValue.md(result.markdown()),
        },
    )


def _quarantine_language(
    context: dg.AssetCheckExecutionContext,
    docs: DocumentStoreResource,
    pages: list[dict[str, Any]],
    allowed: list[str],
) -> dict[str, Any]:
    """Record a document mostly in a language outside ``allowed`` in the quarantine log, with
    the page languages as its reason, so it shows next to the other rejected documents (and
    its run is not simply red with nothing to act on)."""
    from collections import Counter

    key = context.partition_key
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_documents.key, asset_partitions=[key]), limit=1
    ).records
    event = records[0].event_log_entry.asset_materialization if records else None
    meta = event.metadata if event else {}
    name = str(meta["name"].value) if "name" in meta else key
    sha256 = str(meta["sha256"].value) if "sha256" in meta else key
    languages = Counter(str(p.get("language")) for p in pages)
    unexpected = {lang: n for lang, n in languages.items() if lang not in allowed}
    reason = (
        f"{sum(unexpected.values())} of {len(pages)} pages in languages the knowledge base does "
        f"not serve: {dict(sorted(unexpected.items()))} (allowed: {', '.join(allowed)})"
    )
    return docs.quarantine.record(
        name=name, sha256=sha256, code="unexpected_language", reason=reason,
        run_id=context.run.run_id,
    )


def _merged(*results: Any) -> Any:
    """Several suites' results as one (passed only if all passed; failures listed together)."""
    from llmops.quality import QualityResult

    stats: dict[str, Any] = {}
    for r in results:
        for k, v in r.statistics.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "rows":
                stats[k] = stats.get(k, 0) + v
    stats["rows"] = max(r.statistics.get("rows", 0) for r in results)
    if stats.get("evaluated_expectations"):  # a percentage does not add up
        stats["success_percent"] = round(
            100 * stats.get("successful_expectations", 0) / stats["evaluated_expectations"], 2
        )
    return QualityResult(
        "+".join(r.suite for r in results),
        all(r.success for r in results),
        stats,
        [f for r in results for f in r.failed],
    )


def _with_metadata(result: dg.AssetCheckResult, extra: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=result.passed,
        severity=result.severity,
        metadata={**result.metadata, **extra},
    )


@dg.asset_check(asset=extracted_pages, blocking=True, partitions_def=documents_partitions)
def pages_have_text(
    context: dg.AssetCheckExecutionContext,
    extracted_pages: list[dict[str, Any]],
    structuring: StructuringResource,
    docs: DocumentStoreResource,
) -> dg.AssetCheckResult:
    """A document whose pages are all empty would silently vanish from the knowledge base.

    The language expectation tolerates a mis-detected page (``mostly``); a document mostly in
    an unexpected language fails here (it stays out of the knowledge base) and is quarantined
    with its reason, like a document the ingestion rejects.
    """
    import pandas as pd

    from llmops.quality import run_suite

    df = pd.DataFrame(extracted_pages)
    result = run_suite(
        "pages",
        df,
        {"allowed_languages": structuring.allowed_languages},
        structuring.expectations_dir,
    )
    out = _result(result, dg.AssetCheckSeverity.ERROR)
    if any(f.get("column") == "language" for f in result.failed):
        entry = _quarantine_language(
            context, docs, extracted_pages, list(structuring.allowed_languages)
        )
        out = _with_metadata(out, {"quarantined": entry["code"], "reason": entry["reason"]})
    return out


@dg.asset_check(asset=chunks, blocking=True, partitions_def=documents_partitions)
def chunks_well_formed(
    chunks: list[dict[str, Any]], structuring: StructuringResource
) -> dg.AssetCheckResult:
    """Token length within the embedder's window, unique ids, allowed languages."""
    import pandas as pd

    from llmops.quality import run_suite

    df = pd.DataFrame(chunks)
    params = {
        "max_tokens": structuring.max_tokens,
        "allowed_languages": structuring.allowed_languages,
    }
    return _result(
        run_suite("chunks", df, params, structuring.expectations_dir), dg.AssetCheckSeverity.ERROR
    )


@dg.asset_check(asset=chunk_embeddings, blocking=True, additional_ins={"chunks": ALL_DOCUMENTS})
def embeddings_valid(
    context: dg.AssetCheckExecutionContext,
    chunks: dict[str, list[dict[str, Any]]],
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
    structuring: StructuringResource,
) -> dg.AssetCheckResult:
    """The index holds exactly the current documents' chunks, as finite unit vectors of the
    configured model: no NaN/zero vectors, no rows of documents that left, no chunk without a
    vector, no vector from another model (the dimension alone is fixed by the schema)."""
    from llmops.quality import run_suite
    from llmops.vectorstore import health_frame

    current = set(context.instance.get_dynamic_partitions(documents_partitions.name))
    indexed = _documents_chunked_before_indexing(context.instance, current)
    expected = [c["chunk_id"] for doc, rows in chunks.items() if doc in indexed for c in rows]
    df = health_frame(vector_store.open(), current, expected)
    model = embedder.embedder
    stored = df[df["embedded"].astype(bool)]
    vectors = run_suite("embeddings", stored, {"dim": model.dim}, structuring.expectations_dir)
    index = run_suite(
        "index", df, {"model_ids": [model.model_id]}, structuring.expectations_dir
    )
    out = _result(_merged(vectors, index), dg.AssetCheckSeverity.ERROR)
    return _with_metadata(
        out,
        {
            "non_finite_vectors": int((~stored["finite"].astype(bool)).sum()),
            "zero_vectors": int((stored["norm"] < 1e-6).sum()),
            "rows_of_removed_documents": int((~stored["document_current"].astype(bool)).sum()),
            "chunks_without_vector": int(len(df) - len(stored)),
            "other_model_rows": int((stored["model_id"] != model.model_id).sum()),
            "documents_awaiting_indexing": len(current - indexed),
        },
    )


def _documents_chunked_before_indexing(
    instance: dg.DagsterInstance, current: set[str]
) -> set[str]:
    """The current documents whose chunks the last indexing step could have loaded: not
    re-chunked since that step started. A document chunked since (a backfill running beside a
    lifecycle run) waits for the next indexing; counting it as missing would fail a healthy
    index. Compared by timestamp: storage ids of run and asset events are not one sequence on
    SQLite."""
    records = instance.fetch_materializations(chunk_embeddings.key, limit=1).records
    if not records:
        return current
    started = [
        r.timestamp
        for r in instance.get_records_for_run(
            records[0].run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
        if r.event_log_entry.step_key == chunk_embeddings.key.to_python_identifier()
    ]
    if not started:
        return current
    rechunked: set[str] = set()
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=chunks.key, after_timestamp=started[-1]),
            limit=1000,
            cursor=cursor,
        )
        rechunked.update(r.partition_key for r in page.records)
        if not page.has_more:
            return current - rechunked
        cursor = page.cursor


@dg.asset_check(asset=chunk_embeddings, blocking=False)
def near_duplicate_chunks(
    vector_store: VectorStoreResource, structuring: StructuringResource
) -> dg.AssetCheckResult:
    """Many near-duplicates (boilerplate, repeated headers) skew training and retrieval."""
    from llmops.quality import near_duplicate_ratio

    texts = vector_store.open().rows(columns=["text"]).column("text").to_pylist()
    ratio = near_duplicate_ratio(texts, threshold=structuring.near_duplicate_threshold)
    return dg.AssetCheckResult(
        passed=ratio <= structuring.max_near_duplicate_ratio,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "near_duplicate_ratio": round(ratio, 4),
            "max_allowed": structuring.max_near_duplicate_ratio,
            "chunks": len(texts),
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=instruction_dataset, blocking=True, description=desc)
        for name, desc in DATASET_CHECKS.items()
    ],
)
def instruction_dataset_checks(
    context: dg.AssetCheckExecutionContext, dataset_builder: DatasetBuilderResource
):
    """The hand-off to training: a leak or an empty field would make every metric a lie."""
    from datasets import load_from_disk

    from llmops.dataset import check_dataset

    event = context.instance.get_latest_materialization_event(instruction_dataset.key)
    assert event is not None and event.asset_materialization is not None
    path = event.asset_materialization.metadata["path"].value
    outcomes = check_dataset(load_from_disk(path), min_train=dataset_builder.min_train_examples)
    for outcome in outcomes:
        yield dg.AssetCheckResult(
            asset_key=instruction_dataset.key,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR
            if outcome.severity == "error"
            else dg.AssetCheckSeverity.WARN,
            metadata={"message": outcome.message, "dataset": str(path)},
        )
