"""Production storage and the whole stack at once.

Fast: the Parquet IO manager writes and reads a partitioned asset on S3 (moto's server), and the
LanceDB vector store upserts and searches on S3, both configured only through the environment
(`LLMOPS_ASSETS_URI`, `LLMOPS_LANCEDB_URI`, `AWS_*`), as configs/production.yaml does.

Slow: the lifecycle on the production engines together. The Dagster instance is on a throwaway
PostgreSQL (deploy/dagster.postgres.yaml), asset Parquet and LanceDB live on S3, MLflow is a real
`mlflow server` on the same Postgres with its artifacts on S3, and every step runs on a local
Dask cluster (`dask scheduler` + 2 `dask worker` processes) through LLMOPS_EXECUTOR=dask. The
commands are the user's: `llmops ingest`, then `dagster job execute -j lifecycle`. Then the runs
and events are read from Postgres, the Parquet, LanceDB and MLflow objects listed in the bucket,
and the registry aliases read from MLflow's tables.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests import postgres_server, servers
from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import CORPUS
from tests.production_stack import (
    dask_cluster,
    has_bin,
    mlflow_server,
    psycopg2_url,
    s3_keys,
    venv_bin,
)

BUCKET = "llmops-prod"
MODEL = "llmops-ci-assistant"  # configs/ci.yaml's registered_model


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with servers.s3_server(BUCKET) as env:
        yield env


@pytest.fixture
def s3_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3


def _read_parquet_object(env: dict[str, str], key: str) -> list[dict]:
    import boto3
    import pyarrow.parquet as pq

    from resources.storage import table_to_rows

    client = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return table_to_rows(pq.read_table(io.BytesIO(body)))


# -- object storage, configured from the environment -------------------------------------------


def test_object_store_options_follow_the_boto3_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.paths import object_store_options

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.internal:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert object_store_options("s3://b/lancedb") == {
        "aws_endpoint": "http://minio.internal:9000", "allow_http": "true",
        "aws_region": "eu-west-1",
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.com")
    assert "allow_http" not in object_store_options("s3://b/lancedb")
    assert object_store_options("/var/lib/lancedb") is None
    assert object_store_options("gs://b/lancedb") is None


def test_partitioned_parquet_asset_on_s3(s3_env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.storage import ParquetIOManager

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLMOPS_ASSETS_URI", f"s3://{BUCKET}/parquet-test")
    parts = dg.StaticPartitionsDefinition(["doc-a", "doc-b"])

    @dg.asset(partitions_def=parts)
    def records(context) -> list[dict]:  # unannotated: a string annotation is refused
        key = context.partition_key
        return [{"doc": key, "n": i, "meta": {"tags": [key, i]}} for i in range(3)]

    @dg.asset
    def combined(records: dict[str, list[dict]]) -> list[dict]:
        return [dict(r, total=len(records)) for rows in records.values() for r in rows]

    # `{env: LLMOPS_ASSETS_URI}` in a YAML config is this EnvVar; unset, the default reads it too
    for manager in (ParquetIOManager(base_dir=dg.EnvVar("LLMOPS_ASSETS_URI")), ParquetIOManager()):
        resources = {"io_manager": manager}
        for key in parts.get_partition_keys():
            assert dg.materialize([records], partition_key=key, resources=resources).success
        result = dg.materialize([records, combined], resources=resources,
                                selection=[combined.key])
        assert result.success
        assert len(result.output_for_node("combined")) == 6

    keys = set(s3_keys(s3_env, BUCKET, "parquet-test/"))
    assert keys == {"parquet-test/records/doc-a.parquet", "parquet-test/records/doc-b.parquet",
                    "parquet-test/combined.parquet"}
    rows = _read_parquet_object(s3_env, "parquet-test/records/doc-b.parquet")
    assert rows[2] == {"doc": "doc-b", "n": 2, "meta": {"tags": ["doc-b", 2]}}
    assert {r["total"] for r in _read_parquet_object(s3_env, "parquet-test/combined.parquet")} \
        == {2}
    assert not (tmp_path / "data").exists()  # nothing fell back to the local data root

    # A partition written by another process (a Dask worker) after this process listed the
    # prefix is still loaded: a stale s3fs listing cache would skip it as "missing".
    import boto3
    from upath import UPath

    records_dir = UPath(f"s3://{BUCKET}/parquet-test/records")
    assert len(list(records_dir.iterdir())) == 2  # this process has listed the prefix
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    client.copy_object(Bucket=BUCKET, Key="parquet-test/records/doc-c.parquet",
                       CopySource={"Bucket": BUCKET, "Key": "parquet-test/records/doc-a.parquet"})
    wider = dg.StaticPartitionsDefinition(["doc-a", "doc-b", "doc-c"])
    late = dg.asset(partitions_def=wider, name="records")(lambda: [])
    result = dg.materialize([late, _combined(late)], resources={"io_manager": ParquetIOManager()},
                            selection=["combined"])
    assert len(result.output_for_node("combined")) == 9


def _combined(upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(ins={"records": dg.AssetIn(metadata={"allow_missing_partitions": True})})
    def combined(records: dict[str, list[dict]]) -> list[dict]:
        return [r for rows in records.values() for r in rows]

    return combined


def test_lancedb_upsert_and_search_on_s3(s3_env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from llmops.vectorstore import VectorStore
    from resources.knowledge import VectorStoreResource

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LLMOPS_LANCEDB_URI", f"s3://{BUCKET}/lance-test")
    texts = {
        "c1": "The north pumping station runs three pumps.",
        "c2": "Water tariffs rise by four percent in March.",
        "c3": "Crews repaired old cast iron mains after leaks.",
    }
    vectors = {cid: np.eye(4, dtype=np.float32)[i] for i, cid in enumerate(texts)}
    rows = [{"chunk_id": cid, "doc_id": f"doc-{cid}", "text": text, "vector": vectors[cid]}
            for cid, text in texts.items()]

    store = VectorStoreResource().open(dim=4)
    assert store.uri == f"s3://{BUCKET}/lance-test"
    assert store.upsert(rows)["inserted"] == 3
    changed = dict(rows[1], text="Water tariffs rise by five percent in April.")
    assert store.upsert([changed]) == {"inserted": 0, "updated": 1, "version": store.version}
    assert store.count() == 3

    # Reopened by URI alone, as the serving app and the CLI do: the endpoint comes from AWS_*.
    again = VectorStore(f"s3://{BUCKET}/lance-test")
    hits = again.search(None, query_vector=vectors["c3"], k=1, mode="vector")
    assert [h["chunk_id"] for h in hits] == ["c3"]
    hits = again.search("tariffs April", k=1, mode="fts")
    assert [(h["chunk_id"], h["text"]) for h in hits] == [("c2", changed["text"])]
    hits = again.search("pumps", query_vector=vectors["c1"], k=2, mode="hybrid")
    assert hits[0]["chunk_id"] == "c1"

    # Explicit storage options from config win over the environment's.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    configured = VectorStoreResource(
        storage_options={"aws_endpoint": s3_env["AWS_ENDPOINT_URL"], "allow_http": "true"}
    ).open()
    assert configured.count() == 3

    keys = s3_keys(s3_env, BUCKET, "lance-test/")
    assert any(k.startswith("lance-test/chunks.lance/data/") for k in keys), keys
    assert sum(k.endswith(".manifest") for k in keys) >= 3, keys  # create, insert, update
    assert not (tmp_path / "data").exists()


# -- the lifecycle on Postgres + S3 + Dask ------------------------------------------------------


_BINARIES = {"initdb/pg_ctl": postgres_server.available(), "mlflow": has_bin("mlflow"),
             "dask": has_bin("dask"), "dagster": has_bin("dagster"), "llmops": has_bin("llmops")}
_MISSING = [name for name, ok in _BINARIES.items() if not ok]


@pytest.fixture(scope="module")
def stack(s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Postgres (Dagster instance + MLflow backend), MLflow server, Dask cluster, one workspace."""
    import shutil

    pytest.importorskip("dagster_dask", reason="dagster-dask is not installed")
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    root = tmp_path_factory.mktemp("prod_stack")
    inbox = root / "inbox"
    inbox.mkdir()
    for name, text in CORPUS.items():
        (inbox / name).write_text(text, encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    with postgres_server.postgres_server() as pg_url, mlflow_server(
        pg_url, s3, f"s3://{BUCKET}/mlflow", root / "mlflow-server.log"
    ) as tracking:
        env = {
            **os.environ,
            **s3,
            "PYTHONPATH": str(REPO_ROOT),
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": psycopg2_url(pg_url),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "LLMOPS_ENV": "ci",
            "LLMOPS_INBOX": str(inbox),
            "LLMOPS_DATA_DIR": str(root / "data"),
            "LLMOPS_ASSETS_URI": f"s3://{BUCKET}/assets",
            "LLMOPS_LANCEDB_URI": f"s3://{BUCKET}/lancedb",
            "MLFLOW_TRACKING_URI": tracking,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("MLFLOW_REGISTRY_URI", None)
        with dask_cluster(env, root / "dask-logs") as cluster:
            env = {**env, "LLMOPS_EXECUTOR": "dask", "DASK_SCHEDULER_ADDRESS": cluster["address"]}
            steps: list[tuple[str, subprocess.CompletedProcess[str]]] = []
            # No `-c configs/ci.yaml`: its `execution: in_process` would override the executor;
            # the resources come from LLMOPS_ENV=ci all the same. Two ingestion runs at once on
            # one cluster: with dagster-dask's per-job task keys the second run "succeeded"
            # without executing (pipelines/executors.py) and the dataset lost its documents.
            for label, cmd in [
                ("llmops ingest", [venv_bin("llmops"), "ingest", "--workers", "2"]),
                ("dagster job execute -j lifecycle",
                 [venv_bin("dagster"), "job", "execute", "-m", "pipelines.definitions",
                  "-j", "lifecycle"]),
            ]:
                proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True,
                                      text=True, timeout=1500)
                steps.append((label, proc))
                if proc.returncode != 0:
                    break
            yield {"env": env, "pg_url": pg_url, "cluster": cluster, "steps": steps,
                   "root": root}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(bool(_MISSING), reason=f"binaries not found: {', '.join(_MISSING)}")
def test_lifecycle_on_postgres_s3_and_dask(stack: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    for label, proc in stack["steps"]:
        assert proc.returncode == 0, f"{label} failed:\n{(proc.stdout + proc.stderr)[-5000:]}"
    assert len(stack["steps"]) == 2
    env, pg_url = stack["env"], stack["pg_url"]

    # Runs and events: in Postgres, through the instance and in the tables themselves.
    for name in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL"):
        monkeypatch.setenv(name, env[name])
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        by_job: dict[str, list] = {}
        for run in runs:
            by_job.setdefault(run.job_name, []).append(run)
        assert len(by_job["ingest_documents"]) == len(CORPUS)
        assert len(by_job["lifecycle"]) == 1
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        partitions = instance.get_materialized_partitions(dg.AssetKey("chunks"))
        assert len(partitions) == len(CORPUS)
        for key in ("chunk_embeddings", "instruction_dataset", "base_model", "finetuned_model"):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key
        lifecycle = by_job["lifecycle"][0]
        starts = instance.get_records_for_run(
            lifecycle.run_id, of_type=dg.DagsterEventType.STEP_START, limit=1000
        ).records
        step_pids = {r.event_log_entry.dagster_event.pid for r in starts}
        assert {r.event_log_entry.step_key for r in starts} >= {"base_model", "finetuned_model"}
        assert step_pids <= stack["cluster"]["worker_pids"]  # every step ran on a Dask worker
    with psycopg.connect(pg_url) as conn:
        n_runs = conn.execute("select count(*) from runs where status = 'SUCCESS'").fetchone()[0]
        materialized = dict(conn.execute(
            "select asset_key, count(*) from event_logs "
            "where dagster_event_type = 'ASSET_MATERIALIZATION' group by asset_key"
        ).fetchall())
    assert n_runs == len(CORPUS) + 1
    assert materialized['["chunks"]'] == len(CORPUS)
    assert materialized['["finetuned_model"]'] == 1

    # Asset Parquet and LanceDB in the bucket, nothing in the local data root.
    keys = s3_keys(env, BUCKET)
    assert {f"assets/chunks/{p}.parquet" for p in partitions} <= set(keys)
    assert {f"assets/entities/{p}.parquet" for p in partitions} <= set(keys)
    assert any(k.startswith("lancedb/chunks.lance/data/") for k in keys), keys[:40]
    assert any(k.startswith("lancedb/chunks.lance/_versions/") for k in keys), keys[:40]
    data = Path(env["LLMOPS_DATA_DIR"])
    assert not (data / "assets").exists() and not (data / "lancedb").exists()
    rows = _read_parquet_object(env, f"assets/chunks/{sorted(partitions)[0]}.parquet")
    assert rows and all(r["text"] for r in rows)

    # MLflow: artifacts on S3 through the server, runs and aliases in Postgres.
    mlflow_keys = [k for k in keys if k.startswith("mlflow/")]
    assert any(k.endswith(".safetensors") for k in mlflow_keys), mlflow_keys[:40]
    assert any(k.endswith("MLmodel") for k in mlflow_keys), mlflow_keys[:40]
    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/mlflow") as conn:
        aliases = dict(conn.execute(
            "select alias, version from registered_model_aliases where name = %s", (MODEL,)
        ).fetchall())
        finished = conn.execute("select count(*) from runs where status = 'FINISHED'").fetchone()
    assert {"champion": 1, "challenger": 2}.items() <= aliases.items()  # base, then LoRA
    assert finished[0] >= 2
