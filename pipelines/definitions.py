"""The code location: every asset, check, job, sensor and resource, configured from YAML.

`LLMOPS_ENV` (default `local`) picks `configs/<env>.yaml`. Loading this module must stay fast:
no torch/transformers/mlflow/lancedb import happens here (tests/test_definitions.py checks it).
"""

from __future__ import annotations

import dagster as dg

from assets import checks, comparison, dataset, deployment, ingestion, structuring, training
from assets import evaluation as evaluation_assets
from assets import promotion as promotion_assets
from pipelines.executors import build_executor
from pipelines.jobs import (
    evaluation_job,
    indexing_job,
    ingest_job,
    lifecycle_job,
    promotion_job,
    rollback_job,
    training_job,
)
from pipelines.schedules import nightly_champion_evaluation, periodic_retrain
from pipelines.settings import resource_config
from resources.documents import DocumentStoreResource
from resources.evaluation import EvaluationResource
from resources.ingestion import IngestionResource
from resources.knowledge import EmbedderResource, StructuringResource, VectorStoreResource
from resources.llm import DatasetBuilderResource, LLMEndpointResource
from resources.mlflow import MLflowResource
from resources.serving import ServingResource
from resources.storage import ParquetIOManager
from resources.trainer import TrainerResource
from sensors.drift import drift_sensor
from sensors.failures import run_failure_sensor
from sensors.inbox import inbox_sensor

RESOURCE_TYPES: dict[str, type[dg.ConfigurableResource] | type[dg.ConfigurableIOManagerFactory]] = {
    "io_manager": ParquetIOManager,
    "docs": DocumentStoreResource,
    "ingestion": IngestionResource,
    "structuring": StructuringResource,
    "embedder": EmbedderResource,
    "vector_store": VectorStoreResource,
    "dataset_builder": DatasetBuilderResource,
    "llm": LLMEndpointResource,
    "mlflow": MLflowResource,
    "trainer": TrainerResource,
    "evaluation": EvaluationResource,
    "serving": ServingResource,
}


def build_resources(env: str | None = None) -> dict[str, object]:
    config = resource_config(env)
    unknown = set(config) - set(RESOURCE_TYPES)
    if unknown:
        raise ValueError(
            f"configs: unknown resources {sorted(unknown)}; known {sorted(RESOURCE_TYPES)}"
        )
    return {name: cls(**config.get(name, {})) for name, cls in RESOURCE_TYPES.items()}


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, structuring, dataset, training, deployment,
                                        evaluation_assets, comparison, promotion_assets]),
    asset_checks=dg.load_asset_checks_from_modules([checks, training]),
    jobs=[ingest_job, indexing_job, training_job, evaluation_job, promotion_job, lifecycle_job,
          rollback_job],
    sensors=[inbox_sensor, drift_sensor, run_failure_sensor],
    schedules=[nightly_champion_evaluation, periodic_retrain],
    resources=build_resources(),
    executor=build_executor(),  # LLMOPS_EXECUTOR: multiprocess|in_process|dask|k8s|celery
)
