"""The Dagster executor, chosen by `LLMOPS_EXECUTOR` so scaling out needs no code edit.

`multiprocess` (default) and `in_process` ship with Dagster; `dask`, `k8s` and `celery` import
their integration only when chosen (the code location must stay fast to load) and take their
config from `deploy/executors/<name>.yaml` (run-config format: `execution: {config: ...}`), where
locations and secrets are `{env: VAR}` references resolved at run time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

EXECUTOR_DIR = Path(__file__).resolve().parents[1] / "deploy" / "executors"
EXECUTORS = ("multiprocess", "in_process", "dask", "k8s", "celery")


def executor_config(name: str) -> dict[str, Any]:
    """The `execution.config` block of deploy/executors/<name>.yaml ({} if there is no file)."""
    path = EXECUTOR_DIR / f"{name}.yaml"
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    return (raw.get("execution") or {}).get("config") or {}


def _let_dask_pass_dagster_records() -> None:
    """Compatibility: dask >= 2025 `Client.submit` walks every tuple argument looking for futures,
    and dagster's `@record` arguments (the run, the job pointer) forbid iteration, so
    dagster-dask 0.29 fails on submit. Records never hold futures: hand them over untouched."""
    import distributed.client
    from dagster_shared.check.record import is_record

    original = distributed.client.parse_input
    if getattr(original, "_passes_dagster_records", False):
        return

    def parse_input(obj: Any) -> Any:
        return obj if is_record(obj) else original(obj)

    parse_input._passes_dagster_records = True  # type: ignore[attr-defined]
    distributed.client.parse_input = parse_input
    _give_dask_tasks_run_unique_keys()


def _give_dask_tasks_run_unique_keys() -> None:
    """Fix: dagster-dask 0.29 names each task `<job>.<step>`, and Dask returns the result of a
    task already known under that key, so a second run of the same job on a shared cluster at
    the same time (two `ingest_documents` partitions) "succeeds" without executing its steps.
    The run id goes into the key (tests/test_production_stack.py runs two at once)."""
    import distributed
    from dagster_dask.executor import query_on_dask_worker

    original = distributed.Client.submit
    if getattr(original, "_run_unique_keys", False):
        return

    def submit(self: Any, func: Any, *args: Any, key: Any = None, **kwargs: Any) -> Any:
        if func is query_on_dask_worker and key is not None and len(args) > 2:
            key = f"{key}.{args[2].run_id}"  # args: dependencies, job, the DagsterRun, ...
        return original(self, func, *args, key=key, **kwargs)

    submit._run_unique_keys = True  # type: ignore[attr-defined]
    distributed.Client.submit = submit


def _base_executor(name: str) -> dg.ExecutorDefinition:
    if name == "multiprocess":  # Dagster's default: run config may still pick in_process
        return dg.multi_or_in_process_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "dask":
        from dagster_dask import dask_executor

        _let_dask_pass_dagster_records()
        return dask_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    raise ValueError(f"LLMOPS_EXECUTOR={name!r} is not an executor; choose one of {EXECUTORS}")


def build_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor named by `name` or `LLMOPS_EXECUTOR`, configured from its deploy file."""
    name = (name or os.environ.get("LLMOPS_EXECUTOR") or "multiprocess").strip().lower()
    executor = _base_executor(name)
    config = executor_config(name)
    return executor.configured(config, name=executor.name) if config else executor
