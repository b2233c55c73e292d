"""A real Dask cluster: `dask scheduler` + 2 `dask worker` processes on localhost, and the
`ingest_documents` job run on it through LLMOPS_EXECUTOR=dask (dagster-dask), unchanged code."""

from __future__ import annotations

import os
import shutil
import subprocess

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT
from tests.production_stack import dask_cluster, venv_bin

pytestmark = pytest.mark.slow

pytest.importorskip("distributed", reason="dask.distributed is not installed")
pytest.importorskip("dagster_dask", reason="dagster-dask is not installed")

DOCS = {
    "pumps.txt": "The north pumping station runs three pumps. Each pump moves 400 litres a second.",
    "tariff.txt": "From March the water tariff rises by four percent for households in Amman.",
    "leaks.txt": "Leak detection crews repaired 120 mains breaks in 2024, mostly in old cast iron.",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    """What a cluster shares: the instance (DAGSTER_HOME), the inbox, the data store, the config."""
    root = tmp_path_factory.mktemp("dask_ws")
    inbox = root / "inbox"
    inbox.mkdir()
    for name, text in DOCS.items():
        (inbox / name).write_text(text)
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DAGSTER_HOME": str(home),
        "LLMOPS_ENV": "ci",
        "LLMOPS_INBOX": str(inbox),
        "LLMOPS_DATA_DIR": str(root / "data"),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def cluster(workspace, tmp_path_factory):
    with dask_cluster(workspace, tmp_path_factory.mktemp("dask_logs")) as info:
        yield info


def test_ingest_documents_runs_on_the_dask_cluster(cluster, workspace, monkeypatch):
    env = {**workspace, "LLMOPS_EXECUTOR": "dask", "DASK_SCHEDULER_ADDRESS": cluster["address"]}
    home = workspace["DAGSTER_HOME"]
    proc = subprocess.run(
        [venv_bin("llmops"), "ingest", "--workers", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    monkeypatch.setenv("DAGSTER_HOME", home)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == len(DOCS)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for key in ["raw_documents", "extracted_pages", "chunks", "entities"]:
            done = instance.get_materialized_partitions(dg.AssetKey(key))
            assert len(done) == len(DOCS), key
        starts = instance.get_records_for_run(
            runs[0].run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
        assert starts
        # every step started inside a dask worker process, none in the run process
        assert {r.event_log_entry.dagster_event.pid for r in starts} <= cluster["worker_pids"]
