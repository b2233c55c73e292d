"""`deployment`: which champion version is served where, against which LanceDB version.

Materialize it after a promotion (or let the automation do it): it resolves the alias, asks the
endpoint's /healthz which version it actually serves, appends the record to
``$LLMOPS_DATA_DIR/serving/deployments.jsonl`` and puts it in the asset metadata, so the asset
graph runs documents -> chunks -> embeddings / dataset -> model -> deployment -> answers (the
request log carries the same model and LanceDB versions).
"""

import dagster as dg

from llmops.lineage import code_version, resource_settings
from resources.knowledge import VectorStoreResource
from resources.mlflow import MLflowResource
from resources.serving import ServingResource


@dg.asset(
    deps=["finetuned_model", "chunk_embeddings"],
    group_name="serving",
    kinds={"fastapi", "mlflow"},
    code_version=code_version("llmops.serving", settings=resource_settings("serving")),
)
def deployment(
    context: dg.AssetExecutionContext,
    mlflow: MLflowResource,
    vector_store: VectorStoreResource,
    serving: ServingResource,
) -> dg.MaterializeResult:
    """Record the served champion; warns (does not fail) when the endpoint is down or behind."""
    from llmops.serving.deploy import record_deployment

    mlflow.activate()
    rec = record_deployment(
        model_name=mlflow.registered_model, alias=serving.alias, endpoint=serving.url,
        store=vector_store.open(),
    )
    if not rec["in_sync"]:
        context.log.warning(
            f"{serving.url} serves {rec['served_version']!r}, the registry's {serving.alias} is "
            f"v{rec['model_version']}: POST /admin/reload or wait for the poll "
            f"({rec.get('probe_error') or 'reachable'})"
        )
    return dg.MaterializeResult(
        metadata={
            "endpoint": dg.MetadataValue.url(serving.url),
            "model": rec["model"],
            "model_version": rec["model_version"],
            "served_version": str(rec["served_version"]),
            "in_sync": rec["in_sync"],
            "lancedb_table": rec["lancedb_table"],
            "lancedb_version": rec["lancedb_version"],
            "time": rec["time"],
        },
        data_version=dg.DataVersion(f"{rec['model_version']}@{rec['lancedb_version']}"),
    )
