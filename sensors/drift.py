"""Drift sensor: the data moved away from what the champion was trained on -> retrain, once.

Reference = chunks of the documents the champion's base model was trained on (recorded with its
registered version); current = every other chunk in the knowledge base plus the prompts users
sent to the served champion. The window's content hash is both the cursor and the run key, so
evaluating again without new data requests nothing, and one drift event is one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from llmops.paths import data_root
from pipelines.jobs import training_job
from resources.knowledge import EmbedderResource, VectorStoreResource
from resources.mlflow import MLflowResource
from resources.serving import ServingResource


def load_window(
    vector_store: VectorStoreResource, mlflow: MLflowResource, serving: ServingResource
) -> tuple[Any, dict[str, Any]] | str:
    """The champion's drift window and the stored vector of every chunk text, or a string
    saying why there is no window."""
    from llmops import registry
    from llmops.drift import drift_window
    from llmops.evaluation import pretrain_documents
    from llmops.serving.config import default_request_log
    from llmops.serving.requestlog import read_requests

    registry.configure(mlflow.resolved_tracking_uri, mlflow.resolved_registry_uri,
                       mlflow.experiment)
    try:
        version = registry.resolve_version(mlflow.registered_model, registry.CHAMPION)
    except LookupError:
        return "no champion registered yet"
    trained = pretrain_documents(registry.download_model_version(mlflow.registered_model, version))
    if not trained:
        return f"champion v{version} records no training documents (a hub or user model)"
    chunks = vector_store.open().rows(columns=["chunk_id", "doc_id", "text", "vector"]).to_pylist()
    log = default_request_log() if serving.request_log is None else serving.request_log
    requests = list(read_requests(log)) if Path(log).is_file() else []
    served = [r for r in requests if str(r.get("model_version")) == str(version)]
    return drift_window(version, trained, chunks, served), {c["text"]: c["vector"] for c in chunks}


def champion_scores(
    instance: dg.DagsterInstance, version: str, metric: str
) -> tuple[list[float], list[float], int] | None:
    """Per-sample ``metric`` of the champion's first and latest evaluation (the nightly
    schedule keeps it fresh) and the latest one's storage id; None before two exist."""
    import pyarrow.parquet as pq

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("evaluation"), asset_partitions=["champion"]),
        limit=200,
    ).records
    mine = [r for r in records if r.asset_materialization is not None
            and r.asset_materialization.metadata.get("model_version")
            and r.asset_materialization.metadata["model_version"].value == str(version)]
    if len(mine) < 2:
        return None

    def scores(record: Any) -> list[float]:
        path = record.asset_materialization.metadata["scores_path"].value
        return [float(v) for v in pq.read_table(path, columns=[metric]).column(0).to_pylist()
                if v is not None]

    return scores(mine[-1]), scores(mine[0]), mine[0].storage_id


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests one retraining run per drift event of the champion's data.",
)
def drift_sensor(
    context: dg.SensorEvaluationContext,
    vector_store: VectorStoreResource,
    embedder: EmbedderResource,
    mlflow: MLflowResource,
    serving: ServingResource,
):
    from llmops.drift import MIN_TEXTS, CachedEmbedder, detect_drift, plot_report, score_decay
    from llmops.promotion import load_policy

    loaded = load_window(vector_store, mlflow, serving)
    if isinstance(loaded, str):
        return dg.SkipReason(loaded)
    window, stored_vectors = loaded
    if len(window.current) < MIN_TEXTS or len(window.reference) < MIN_TEXTS:
        return dg.SkipReason(
            f"window too small: {len(window.reference)} reference, {len(window.current)} "
            f"current texts (need {MIN_TEXTS})"
        )
    metric = load_policy().primary.metric
    decay = champion_scores(context.instance, window.champion_version, metric)
    key = window.key if decay is None else f"{window.key}-e{decay[2]}"
    if context.cursor == key:
        return dg.SkipReason(f"window {key} already tested; no new data or evaluation")
    # chunks reuse their stored vectors: only served prompts are embedded
    embed = CachedEmbedder(embedder.embedder.encode, known=stored_vectors)
    report = detect_drift(window.reference, window.current, embed=embed)
    if decay is not None:  # the champion's score on recent data vs when it was promoted
        report.tests.append(score_decay(decay[0], decay[1], name=f"{metric}_decay"))
        report.drift = any(t.drift for t in report.tests)
    context.update_cursor(key)
    context.log.info(report.markdown())
    if not report.drift:
        return dg.SkipReason(f"no drift in window {key}")
    drifted = [t.name for t in report.tests if t.drift]
    folder = data_root() / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.md").write_text(report.markdown())
    plot = plot_report(report, window.reference, window.current, folder / f"{key}.png")
    return dg.RunRequest(
        run_key=f"drift-{key}",
        tags={
            "llmops/trigger": "drift",
            "llmops/champion_version": window.champion_version,
            "llmops/drift_tests": ",".join(drifted),
            "llmops/drift_report": json.dumps(report.to_dict())[:4000],
            "llmops/drift_plot": str(plot),
        },
    )
