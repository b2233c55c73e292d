"""Serving settings as a resource, and the Dagster half of `llmops trace` (the instance lookup).

The server itself is not a Dagster process: ``llmops serve`` builds ``ServeConfig`` from this
resource plus the mlflow / vector_store / embedder resources of the same configs/<env>.yaml, so
one file says where the model registry, the knowledge base and the endpoint are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from llmops.serving.config import ServeConfig

# assets whose materializations a served answer descends from, with the value that pins each
LINEAGE_ASSETS = ("deployment", "finetuned_model", "base_model", "instruction_dataset",
                  "chunk_embeddings")


class ServingResource(dg.ConfigurableResource):
    """Where the endpoint listens and how it answers (see llmops.serving.config.ServeConfig)."""

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # how clients reach it, when behind a proxy / load balancer
    alias: str = "champion"
    k: int = 4
    mode: str = "hybrid"
    max_context_chars: int = 2000
    max_new_tokens: int = 64
    max_prompt_chars: int = 4000
    max_body_bytes: int = 64_000
    rate_per_s: float = 5.0
    burst: int = 20
    poll_interval_s: float = 30.0
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    request_log: str | None = None  # default: $LLMOPS_DATA_DIR/serving/requests.jsonl
    backend: str = "local"  # local | endpoint (vLLM / any OpenAI-compatible server)
    backend_url: str | None = None
    backend_model: str | None = None

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def serve_config(
        self, model_name: str, tracking_uri: str | None, lancedb_uri: str | None, table: str,
        embedder_model: str | None, doc_names: Mapping[str, str] | None = None,
    ) -> ServeConfig:
        from llmops.serving.config import ServeConfig

        fields = self.model_dump(exclude={"host", "port"})
        fields["public_url"] = self.url
        return ServeConfig(
            model_name=model_name, tracking_uri=tracking_uri, lancedb_uri=lancedb_uri,
            table=table, embedder_model=embedder_model, doc_names=dict(doc_names or {}),
            **fields,
        )


def _metadata_values(event: Any) -> set[str]:
    mat = event.asset_materialization
    values = {str(getattr(v, "value", v)) for v in (mat.metadata or {}).values()} if mat else set()
    return values


def dagster_lineage(instance: dg.DagsterInstance, chain: Mapping[str, Any],
                    depth: int = 50) -> list[dict[str, Any]]:
    """The Dagster runs that produced what an answer used: per lineage asset, the
    materialization whose metadata holds the served value (model version, dataset version,
    LanceDB version) or whose run is the one the MLflow run names; latest otherwise, flagged
    ``matched: false``."""
    model = chain.get("model") or {}
    run_tags = (model.get("run") or {}).get("tags") or {}
    wanted = {
        "finetuned_model": {str(model.get("version")), str(run_tags.get("dataset_version"))},
        "base_model": {str(run_tags.get("base_model_version"))},
        "instruction_dataset": {str(run_tags.get("dataset_version"))},
        "chunk_embeddings": {str((chain.get("lancedb") or {}).get("version"))},
        "deployment": {str(model.get("version"))},
    }
    mlflow_run = run_tags.get("dagster_run_id")
    out = []
    for asset in LINEAGE_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=depth).records
        if not records:
            continue
        hit = next((r for r in records if r.run_id == mlflow_run), None) or next(
            (r for r in records if wanted[asset] & _metadata_values(r.event_log_entry)), None)
        record, matched = (hit, True) if hit is not None else (records[0], False)
        run = instance.get_run_by_id(record.run_id)
        out.append({
            "asset": asset, "run_id": record.run_id, "matched": matched,
            "job": run.job_name if run else None,
            "status": run.status.value if run else None,
            "time": datetime.fromtimestamp(record.timestamp, UTC).isoformat(),
        })
    return out
