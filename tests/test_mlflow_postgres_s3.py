"""MLflow in production shape: a real `mlflow server` on Postgres with S3 (moto) artifacts.

The project's own registry code (llmops.registry) logs, registers, promotes and rolls back
through the server; the test then reads the runs and aliases back from Postgres and lists the
artifacts in the S3 bucket with boto3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.base_model import BaseModelInfo
from llmops.training import TrainConfig, TrainResult, train_lora
from tests import postgres_server, production_stack, servers
from tests.training_data import shared_dataset, shared_tiny_base

MODEL = "llmops-prod-assistant"
BUCKET = "llmops-artifacts"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_server.available(), reason="PostgreSQL binaries not found"),
    pytest.mark.skipif(not production_stack.has_bin("mlflow"),
                       reason="the mlflow CLI (mlflow server) is not installed"),
]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with servers.s3_server(BUCKET) as env:
        yield env


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server.postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def mlflow_server(pg_url: str, s3: dict[str, str], tmp_path_factory) -> Iterator[str]:
    """`mlflow server` on the Postgres backend, artifacts proxied to s3://BUCKET/mlflow."""
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    with production_stack.mlflow_server(pg_url, s3, f"s3://{BUCKET}/mlflow", log) as url:
        yield url


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> BaseModelInfo:
    return shared_tiny_base(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained(tiny: BaseModelInfo, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[TrainResult, Path, str]:
    ds_path, ds_version = shared_dataset(tmp_path_factory.getbasetemp())
    cfg = TrainConfig(max_steps=4, eval_steps=2, logging_steps=1, batch_size=8)
    result = train_lora(cfg, tiny.path, ds_path, output_dir=tmp_path_factory.mktemp("prod-reg"))
    return result, ds_path, ds_version


def test_registry_promotion_and_rollback_on_postgres_with_s3_artifacts(
    mlflow_server: str, pg_url: str, s3: dict[str, str], tiny: BaseModelInfo,
    trained: tuple[TrainResult, Path, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    import mlflow
    import psycopg

    from llmops import registry

    # The client side only needs the tracking URL: artifacts go through the server's proxy.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_LOCATION", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)

    champion = registry.register_base_as_champion(tiny, MODEL, dagster_run_id="run-base",
                                                  experiment="llmops-prod")
    assert champion == "1"
    result, ds_path, ds_version = trained
    reg = registry.log_training_run(
        result, model_name=MODEL, base_model_dir=tiny.path, base_model_version=tiny.version,
        dataset_path=str(ds_path), dataset_version=ds_version, metrics={"test_perplexity": 9.5},
        dagster_run_id="run-ft", experiment="llmops-prod",
    )
    assert reg.version == "2"
    assert registry.alias_snapshot(MODEL) == {
        "champion": "1", "challenger": "2", "previous_champion": None,
    }

    # Promotion then rollback, through the project's functions, on the server's registry.
    assert registry.promote_challenger(MODEL, "2", expected_champion="1") == {
        "champion": "2", "previous_champion": "1",
    }
    with pytest.raises(registry.StaleChampionError):
        registry.promote_challenger(MODEL, "2", expected_champion="1")
    assert registry.rollback_champion(MODEL, reason="test") == {"champion": "1", "demoted": "2"}
    with pytest.raises(registry.RollbackError):
        registry.rollback_champion(MODEL)

    # Runs, versions and aliases live in Postgres (the server's backend store).
    backend = pg_url.rsplit("/", 1)[0] + "/mlflow"
    with psycopg.connect(backend) as conn:
        runs = dict(conn.execute("select run_uuid, status from runs").fetchall())
        aliases = dict(conn.execute(
            "select alias, version from registered_model_aliases where name = %s", (MODEL,)
        ).fetchall())
        versions = conn.execute(
            "select version from model_versions where name = %s order by version", (MODEL,)
        ).fetchall()
        demoted = conn.execute(
            "select value from model_version_tags where name = %s and version = 2 "
            "and key = 'rollback.reason'", (MODEL,)
        ).fetchone()
    assert runs[reg.run_id] == "FINISHED" and len(runs) >= 2
    assert aliases == {"champion": 1, "challenger": 2}
    assert versions == [(1,), (2,)]
    assert demoted == ("test",)

    # Artifacts (the adapter, the registered model files) are objects in the S3 bucket.
    client = boto3.client(
        "s3", endpoint_url=s3["MLFLOW_S3_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="mlflow/") for o in page.get("Contents", [])]
    assert any(reg.run_id in k for k in keys), keys[:20]
    assert any(k.endswith(".safetensors") for k in keys), keys[:20]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]

    # The registered challenger downloads back from S3 through the server.
    files = registry.download_model_version(MODEL, "challenger")
    assert files
