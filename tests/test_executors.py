"""LLMOPS_EXECUTOR picks the executor; every shipped executor config validates without a cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from pipelines.executors import (
    EXECUTOR_DIR,
    EXECUTORS,
    _base_executor,
    build_executor,
    executor_config,
)
from tests.conftest import REPO_ROOT

ENV = {
    "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786",
    "LLMOPS_K8S_NAMESPACE": "llmops",
    "CELERY_BROKER_URL": "pyamqp://guest@127.0.0.1//",
    "CELERY_BACKEND_URL": "rpc://",
}


@dg.asset
def _probe() -> int:
    return 1


def _job_with(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    defs = dg.Definitions(assets=[_probe], jobs=[dg.define_asset_job("probe")], executor=executor)
    return defs.resolve_job_def("probe")


@pytest.mark.parametrize("name", EXECUTORS)
def test_each_executor_is_chosen_by_env_and_its_config_validates(name, monkeypatch):
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("LLMOPS_EXECUTOR", name)
    executor = build_executor()
    expected = {"multiprocess": "multi_or_in_process_executor"}.get(name, name)
    assert executor.name == expected
    # the configured executor needs no run config at launch
    assert dg.validate_run_config(_job_with(executor), {})


@pytest.mark.parametrize("path", sorted(EXECUTOR_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_executor_file_is_valid_run_config_for_its_bare_executor(path, monkeypatch):
    for var, value in ENV.items():
        monkeypatch.setenv(var, value)
    assert path.stem in EXECUTORS
    assert executor_config(path.stem), f"{path.name} has no execution.config block"
    unconfigured = _base_executor(path.stem)  # the file against the integration's own schema
    assert dg.validate_run_config(_job_with(unconfigured), yaml.safe_load(path.read_text()))


def test_a_wrong_executor_config_is_rejected(monkeypatch):
    from dagster_dask import dask_executor

    job = _job_with(dask_executor)
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"cluster": {"nowhere": {}}}}})


def test_an_unknown_executor_names_the_choices(monkeypatch):
    monkeypatch.setenv("LLMOPS_EXECUTOR", "spark")
    with pytest.raises(ValueError, match=r"LLMOPS_EXECUTOR='spark'.*dask"):
        build_executor()


def test_the_default_code_location_imports_no_executor_integration():
    code = (
        "import sys, json; import pipelines.definitions as d; "
        "print(json.dumps([d.defs.resolve_job_def('lifecycle').executor_def.name, "
        "[m for m in ('dagster_dask', 'dagster_k8s', 'dagster_celery', 'distributed') "
        "if m in sys.modules]]))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "LLMOPS_EXECUTOR"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["multi_or_in_process_executor", []]
