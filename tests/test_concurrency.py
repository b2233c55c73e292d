"""Concurrency on the production instance: two lifecycle runs and an ingestion backfill at once.

A real PostgreSQL server holds the Dagster instance (deploy/dagster.postgres.yaml, whose
`concurrency.pools.default_limit: 1` gives the `training` pool one slot) and the MLflow registry.
Three processes start together: two `dagster job execute -j lifecycle` and `llmops ingest`
(the project's backfill: one `ingest_documents` run per new partition, two at a time). Then:
every run succeeded, every materialization is in the event log, and no two training steps
(base_model, finetuned_model) of the two lifecycle runs were ever running at the same time.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time

import dagster as dg
import pytest

from tests import postgres_server
from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import venv_bin
from tests.production_stack import psycopg2_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not postgres_server.available(), reason="PostgreSQL binaries (initdb, pg_ctl) not found"
    ),
]

SAMPLES = REPO_ROOT / "examples" / "inbox"
FIRST = ["drought-faq.html", "tariff-notice-ar.txt", "customer-charter.docx"]
BACKFILL = {
    f"station-{i}.txt": (
        f"Pumping station {i} serves district {i + 3}. It moved {400 + 37 * i} litres a second "
        f"in {2020 + i}, and crews replaced {i + 2} valves after the winter inspection."
    )
    for i in range(4)
}
INGEST_ASSETS = ["raw_documents", "extracted_pages", "chunks", "entities"]
LIFECYCLE_ASSETS = ["instruction_dataset", "base_model", "finetuned_model"]
TRAINING_STEPS = ("base_model", "finetuned_model")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Postgres-backed DAGSTER_HOME and MLflow, the first corpus ingested beforehand."""
    import psycopg

    root = tmp_path_factory.mktemp("concurrency")
    with postgres_server.postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create database mlflow")
        mlflow_uri = psycopg2_url(url.rsplit("/", 1)[0] + "/mlflow")
        home = root / "dagster_home"
        home.mkdir()
        shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
        inbox = root / "inbox"
        inbox.mkdir()
        for name in FIRST:
            shutil.copy(SAMPLES / name, inbox / name)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": psycopg2_url(url),
            "LLMOPS_ENV": "ci",
            "LLMOPS_INBOX": str(inbox),
            "LLMOPS_DATA_DIR": str(root / "data"),
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "HF_HUB_OFFLINE": "1",
        }
        # Create the MLflow schema and experiment once, so the two runs do not race to migrate.
        subprocess.run(
            [
                sys.executable, "-c",
                "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); "
                "mlflow.create_experiment('llmops-ci', artifact_location=sys.argv[2])",
                mlflow_uri, (root / "mlartifacts").as_uri(),
            ],
            env=env, check=True, capture_output=True, timeout=300,
        )
        # Pools are created explicitly, as a deployment does: two runs creating the same pool
        # from `default_limit` at the same moment race on dagster-postgres's unique key
        # (UniqueViolation on concurrency_limits, seen in this test with Dagster 1.13).
        for pool in ("training", "knowledge_base"):
            proc = _run([venv_bin("dagster"), "instance", "concurrency", "set", pool, "1"], env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = _run([venv_bin("llmops"), "ingest", "--workers", "2"], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield {"env": env, "inbox": inbox, "pg_url": url}


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def concurrent(workspace):
    """Start both lifecycle runs and the backfill together; wait for all three."""
    env = workspace["env"]
    for name, text in BACKFILL.items():
        (workspace["inbox"] / name).write_text(text)
    lifecycle = [
        venv_bin("dagster"), "job", "execute", "-m", "pipelines.definitions",
        "-j", "lifecycle", "-c", "configs/ci.yaml",
    ]
    commands = {
        "lifecycle-1": lifecycle,
        "lifecycle-2": lifecycle,
        "backfill": [venv_bin("llmops"), "ingest", "--workers", "2"],
    }
    procs = {
        name: subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        for name, cmd in commands.items()
    }
    started = time.time()
    outputs = {name: proc.communicate(timeout=900)[0] for name, proc in procs.items()}
    codes = {name: proc.returncode for name, proc in procs.items()}
    return {"codes": codes, "outputs": outputs, "started": started}


@pytest.fixture
def instance(workspace, monkeypatch):
    for key in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL"):
        monkeypatch.setenv(key, workspace["env"][key])
    with dg.DagsterInstance.get() as inst:
        yield inst


def _failed_checks(instance: dg.DagsterInstance) -> list[str]:
    """Every failed asset check evaluation with its metadata, to explain a failed run."""
    out = []
    for run in instance.get_runs():
        for record in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if not evaluation.passed:
                meta = {k: v.value for k, v in evaluation.metadata.items()}
                out.append(f"{run.job_name} {run.run_id[:8]} {evaluation.check_name}: {meta}")
    return out


def test_every_concurrent_run_succeeds(concurrent, instance):
    for name, code in concurrent["codes"].items():
        assert code == 0, (
            f"{name} failed:\n{concurrent['outputs'][name][-4000:]}\n"
            + "\n".join(_failed_checks(instance))
        )
    runs = instance.get_runs()
    by_job: dict[str, list[dg.DagsterRun]] = {}
    for run in runs:
        by_job.setdefault(run.job_name, []).append(run)
    assert len(by_job["lifecycle"]) == 2
    assert len(by_job["ingest_documents"]) == len(FIRST) + len(BACKFILL)
    bad = {r.run_id: r.status for r in runs if r.status != dg.DagsterRunStatus.SUCCESS}
    assert not bad, bad


def test_no_materialization_is_lost(concurrent, instance):
    partitions = instance.get_dynamic_partitions("documents")
    assert len(partitions) == len(FIRST) + len(BACKFILL)
    for key in INGEST_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey(key), limit=1000).records
        per_partition: dict[str, int] = {}
        for record in records:
            part = record.partition_key
            per_partition[part] = per_partition.get(part, 0) + 1
        # each document version ingested exactly once, by the setup or by the backfill
        assert per_partition == dict.fromkeys(partitions, 1), key
    lifecycle_runs = {
        r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="lifecycle"))
    }
    for key in LIFECYCLE_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        assert {r.run_id for r in records} == lifecycle_runs, key
        assert len(records) == 2, key


def _training_intervals(
    instance: dg.DagsterInstance, run_id: str
) -> list[tuple[str, float, float]]:
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for event_type, into in (
        (dg.DagsterEventType.STEP_START, starts),
        (dg.DagsterEventType.STEP_SUCCESS, ends),
    ):
        for record in instance.get_records_for_run(run_id, of_type=event_type).records:
            entry = record.event_log_entry
            if entry.step_key in TRAINING_STEPS:
                into[entry.step_key] = entry.timestamp
    assert set(starts) == set(ends) == set(TRAINING_STEPS), (run_id, starts, ends)
    return [(f"{run_id[:8]}:{step}", starts[step], ends[step]) for step in TRAINING_STEPS]


def test_training_pool_never_runs_two_training_steps_at_once(concurrent, instance):
    runs = instance.get_runs(dg.RunsFilter(job_name="lifecycle"))
    assert len(runs) == 2
    intervals = sorted(
        (i for run in runs for i in _training_intervals(instance, run.run_id)),
        key=lambda i: i[1],
    )
    assert len(intervals) == 4
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(intervals):
        assert a_end <= b_start, f"{a} still running when {b} started"
    # the runs really overlapped in time, so the pool (not luck) kept the training steps apart
    stats = [instance.get_run_stats(r.run_id) for r in runs]
    assert max(s.start_time for s in stats) < min(s.end_time for s in stats), (
        "the two lifecycle runs did not overlap; nothing was tested"
    )
