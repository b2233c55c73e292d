"""Asset checks at each hand-off, backed by Great Expectations suites in configs/expectations.

ERROR-severity checks are blocking: a failing one stops the downstream assets of the same run,
and the failed expectations are shown as a table in the UI.
"""

import warnings
from typing import Any

import dagster as dg

from assets.dataset import DATASET_CHECKS, instruction_dataset
from assets.ingestion import extracted_pages
from assets.partitions import documents_partitions
from assets.structuring import chunk_embeddings, chunks
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


@dg.asset_check(asset=extracted_pages, blocking=True, partitions_def=documents_partitions)
def pages_have_text(
    extracted_pages: list[dict[str, Any]], structuring: StructuringResource
) -> dg.AssetCheckResult:
    """A document whose pages are all empty would silently vanish from the knowledge base."""
    import pandas as pd

    from llmops.quality import run_suite

    df = pd.DataFrame(extracted_pages)
    result = run_suite(
        "pages",
        df,
        {"allowed_languages": structuring.allowed_languages},
        structuring.expectations_dir,
    )
    return _result(result, dg.AssetCheckSeverity.ERROR)


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


@dg.asset_check(asset=chunk_embeddings, blocking=True)
def embeddings_valid(
    embedder: EmbedderResource, vector_store: VectorStoreResource, structuring: StructuringResource
) -> dg.AssetCheckResult:
    """Every vector has the model's dimension and unit norm; chunk ids are unique."""
    import numpy as np
    import pandas as pd

    from llmops.quality import run_suite

    rows = vector_store.open().rows(columns=["chunk_id", "vector"]).to_pylist()
    vectors = [np.asarray(r["vector"], dtype=np.float32) for r in rows]
    df = pd.DataFrame(
        {
            "chunk_id": [r["chunk_id"] for r in rows],
            "dim": [v.shape[0] for v in vectors],
            "norm": [float(np.linalg.norm(v)) for v in vectors],
        }
    )
    params = {"dim": embedder.embedder.dim}
    return _result(
        run_suite("embeddings", df, params, structuring.expectations_dir),
        dg.AssetCheckSeverity.ERROR,
    )


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
