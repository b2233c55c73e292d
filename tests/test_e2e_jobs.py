"""End to end as CI runs it: `llmops ingest`, then `dagster job execute -j lifecycle`.

Real components throughout: a Dagster instance on SQLite, tesseract, the packaged MiniLM
embedder, LanceDB, the self-built tiny model trained with LoRA through Pipes, MLflow's SQLite
registry. One bad document sits in the inbox and must not stop the others.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import fresh_workspace, venv_bin

pytestmark = pytest.mark.slow
SAMPLES = REPO_ROOT / "examples" / "inbox"
GOOD = [
    "water-authority-annual-report-2024.pdf",
    "customer-charter.docx",
    "drought-faq.html",
    "tariff-notice-ar.txt",
]
BAD = "truncated-upload.pdf"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("e2e")
    return fresh_workspace(root, [SAMPLES / name for name in [*GOOD, BAD]])


def _run(cmd: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def ingested(workspace):
    proc = _run([venv_bin("llmops"), "ingest", "--workers", "2"], workspace)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def lifecycle(workspace, ingested):
    proc = _run(
        [
            venv_bin("dagster"), "job", "execute", "-m", "pipelines.definitions",
            "-j", "lifecycle", "-c", "configs/ci.yaml",
        ],
        workspace,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc


def test_ingest_quarantines_the_bad_document_and_keeps_the_others(workspace, ingested):
    assert "ingested 4/5" in ingested.stderr, ingested.stderr
    proc = _run([venv_bin("llmops"), "quarantine", "--json"], workspace)
    entries = json.loads(proc.stdout)
    assert [e["name"] for e in entries] == [BAD]
    assert entries[0]["code"] == "malformed"


def test_lifecycle_job_builds_the_knowledge_base_and_registers_a_challenger(workspace, lifecycle):
    proc = _run([venv_bin("llmops"), "search", "solar installation capacity", "--json"], workspace)
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert hits and "solar" in " ".join(h["text"] for h in hits).lower()
    assert all(not h["doc_id"].startswith("truncated-upload") for h in hits)

    proc = _run([venv_bin("llmops"), "models", "--json"], workspace)
    assert proc.returncode == 0, proc.stderr
    versions = json.loads(proc.stdout)["versions"]
    aliases = {a for v in versions for a in v["aliases"]}
    assert {"champion", "challenger"} <= aliases


def test_rerunning_ingest_is_idempotent(workspace, lifecycle):
    proc = _run([venv_bin("llmops"), "ingest"], workspace)
    assert proc.returncode == 0, proc.stderr
    # Nothing new, and the quarantined document is not retried with the same content.
    assert "0 new" in proc.stderr and "ingesting 0" in proc.stderr
