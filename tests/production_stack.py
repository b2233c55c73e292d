"""The production engines as local processes, shared by the Dask, production-stack and scale-out
tests and benches: a `dask scheduler` + `dask worker` cluster, and an `mlflow server` on Postgres
with its artifacts on S3. Each is a context manager that stops its processes on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import servers
from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import venv_bin


def has_bin(name: str) -> bool:
    return (Path(sys.executable).parent / name).exists() or shutil.which(name) is not None


def psycopg2_url(url: str) -> str:
    """dagster-postgres and MLflow speak psycopg2; SQLAlchemy 2.1 picks psycopg 3 for a bare
    postgresql:// URL."""
    return url.replace("postgresql://", "postgresql+psycopg2://")


def wait_for_workers(address: str, n: int, timeout: float = 120) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


@contextmanager
def dask_cluster(env: dict[str, str], logs: Path, workers: int = 2) -> Iterator[dict]:
    """`dask scheduler` and ``workers`` single-threaded `dask worker` processes on localhost.

    The workers inherit ``env``: they run the Dagster steps, so they need the same instance,
    data locations and credentials as the run. Yields address, worker_pids and the logs dir.
    """
    logs.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen:
        with (logs / f"{name}.log").open("w") as log:
            proc = subprocess.Popen([venv_bin("dask"), *args], cwd=REPO_ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        spawn("scheduler",
              ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        pids = {
            spawn(f"worker{i}", ["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--name", f"w{i}"]).pid
            for i in range(workers)
        }
        wait_for_workers(address, workers)
        yield {"address": address, "worker_pids": pids, "logs": logs}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def mlflow_server(pg_url: str, s3_env: dict[str, str], artifacts: str, log: Path,
                  database: str = "mlflow") -> Iterator[str]:
    """`mlflow server` with its backend store in a new ``database`` on the Postgres server at
    ``pg_url`` and artifacts proxied to ``artifacts`` (an s3:// URI). Yields the tracking URL;
    clients need no S3 credentials, the server holds them."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    backend = psycopg2_url(pg_url).rsplit("/", 1)[0] + f"/{database}"
    port = servers.free_port()
    # No server-side job runner (huey consumers for GenAI judge/optimizer jobs): the project
    # schedules its work in Dagster, and those ~8 idle processes only load a shared machine.
    env = {**os.environ, **s3_env, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [venv_bin("mlflow"), "server", "--backend-store-uri", backend,
             "--artifacts-destination", artifacts,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            servers.wait_http(f"{url}/health", proc, timeout=180)
        except Exception as exc:
            raise RuntimeError(f"mlflow server failed: {log.read_text()[-3000:]}") from exc
        yield url
    finally:
        servers.stop(proc)


def s3_keys(env: dict[str, str], bucket: str, prefix: str = "") -> list[str]:
    """Every object key under ``prefix`` in ``bucket`` on the S3 endpoint of ``env``."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
