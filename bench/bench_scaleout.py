"""Scale-out of the ingestion backfill: one worker vs a local Dask cluster, SQLite vs Postgres.

The same deterministic inbox (N small TXT documents, distinct content) is ingested from scratch
with `llmops ingest` (one `ingest_documents` run per document partition) in three setups:

  (a) baseline: SQLite instance, in-process executor, one run at a time (1 worker);
  (b) Dask: `dask scheduler` + 2 `dask worker` processes, LLMOPS_EXECUTOR=dask, 2 runs at a time;
  (c) Postgres: (a) on a throwaway PostgreSQL instance (deploy/dagster.postgres.yaml).

Ratios are against (a) measured in the same invocation; no assertion on timings.
Usage: python bench/bench_scaleout.py [--quick | --docs=N]  (50 documents; --quick: 4)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import postgres_server  # noqa: E402
from tests.production_stack import dask_cluster, venv_bin  # noqa: E402

TOPICS = ["pumping", "tariffs", "leak repair", "reservoirs", "desalination", "metering", "billing"]


def make_inbox(path: Path, n: int) -> None:
    """N short documents, deterministic and pairwise distinct (distinct partitions and chunks)."""
    path.mkdir(parents=True)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        text = (
            f"Bulletin {i:03d} on {topic}. District {i % 11 + 1} reported {120 + 7 * i} cases in "
            f"{2015 + i % 10}. The authority budgeted {3 + i % 5}.{i % 10} million dinars and "
            f"assigned crew {chr(65 + i % 26)}{i} to the work, due before week {i % 52 + 1}.\n"
        )
        (path / f"bulletin-{i:03d}.txt").write_text(text)


def workspace(base: Path, name: str, inbox: Path, instance_yaml: Path) -> dict[str, str]:
    home = base / name / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(instance_yaml, home / "dagster.yaml")
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGSTER_HOME": str(home),
        "LLMOPS_ENV": "ci",
        "LLMOPS_INBOX": str(inbox),
        "LLMOPS_DATA_DIR": str(base / name / "data"),
        "HF_HUB_OFFLINE": "1",
    }


def ingest(env: dict[str, str], workers: int, n: int) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [venv_bin("llmops"), "ingest", "--workers", str(workers)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or f"ingested {n}/{n}" not in proc.stderr:
        raise SystemExit(f"ingestion failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main(argv: list[str]) -> int:
    # SIGTERM (a timeout) still stops the cluster and the Postgres server in the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    docs = [a.split("=", 1)[1] for a in argv if a.startswith("--docs=")]
    n = int(docs[-1]) if docs else 4 if "--quick" in argv else 50
    base = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    try:
        inbox = base / "inbox"
        make_inbox(inbox, n)
        sqlite_yaml = ROOT / "dagster.yaml"
        print(f"ingestion backfill of {n} TXT documents (llmops ingest, one run per document)")

        env = workspace(base, "baseline", inbox, sqlite_yaml)
        baseline = ingest(env, workers=1, n=n)
        print(f"(a) SQLite, in-process, 1 worker      {baseline:7.1f}s  ({baseline / n:.2f}s/doc)")

        try:
            import dagster_dask  # noqa: F401
            import distributed  # noqa: F401
        except ImportError as err:
            print(f"(b) SKIPPED: dask scale-out needs {err.name} (not installed)")
        else:
            env = workspace(base, "dask", inbox, sqlite_yaml)
            with dask_cluster(env, base / "dask-logs", workers=2) as cluster:
                env |= {"LLMOPS_EXECUTOR": "dask", "DASK_SCHEDULER_ADDRESS": cluster["address"]}
                dask = ingest(env, workers=2, n=n)
            print(f"(b) Dask cluster, 2 workers           {dask:7.1f}s  "
                  f"speed-up x{baseline / dask:.2f} vs (a)")

        if not postgres_server.available():
            print("(c) SKIPPED: PostgreSQL binaries (initdb, pg_ctl) not found")
        else:
            with postgres_server.postgres_server() as url:
                env = workspace(base, "postgres", inbox, ROOT / "deploy" / "dagster.postgres.yaml")
                env["DAGSTER_POSTGRES_URL"] = url.replace("postgresql://", "postgresql+psycopg2://")
                pg = ingest(env, workers=1, n=n)
            print(f"(c) Postgres, in-process, 1 worker    {pg:7.1f}s  "
                  f"overhead x{pg / baseline:.2f} vs SQLite (a)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
