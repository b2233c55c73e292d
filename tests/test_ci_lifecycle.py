"""The lifecycle as CI runs it (`.ci/run` -> `make test` -> this file), checked through Dagster.

On a fresh DAGSTER_HOME (the repo's dagster.yaml: SQLite, telemetry off) and a fresh data dir:
`llmops ingest` of a five-document inbox, `dagster job execute -m pipelines.definitions -j
lifecycle -c configs/ci.yaml`, then the `evaluation` group as `llmops demo` runs it (one
`dagster asset materialize` per candidate partition, then `ab_comparison,promotion`). The
outcome is read back from the Dagster instance: run statuses, each asset's latest
materialization, and the promotion decision with its gates in the materialization metadata.
"""

from __future__ import annotations

import json
import re
import subprocess

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import CORPUS, LifecycleInstance, built, venv_bin

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> LifecycleInstance:
    return built(tmp_path_factory.getbasetemp() / "ci-lifecycle")


@pytest.fixture
def instance(ci_run: LifecycleInstance, monkeypatch: pytest.MonkeyPatch):
    """The CI run's instance, found the way every Dagster tool finds it: $DAGSTER_HOME."""
    monkeypatch.setenv("DAGSTER_HOME", str(ci_run.dagster_home))
    with dg.DagsterInstance.get() as inst:
        yield inst


def _job_asset_keys(job: str) -> set[dg.AssetKey]:
    from pipelines.definitions import defs

    return set(defs.resolve_job_def(job).asset_layer.selected_asset_keys)


def test_every_ci_command_succeeds(ci_run: LifecycleInstance) -> None:
    labels = [label for label, _, _ in ci_run.steps]
    assert labels[:2] == ["llmops ingest", "dagster job execute -j lifecycle"]
    assert labels[-1] == "dagster asset materialize ab_comparison,promotion"
    for label, proc, seconds in ci_run.steps:
        assert proc.returncode == 0, f"{label}: {(proc.stdout + proc.stderr)[-3000:]}"
        print(f"{label}: {seconds:.1f}s")
    ingest = ci_run.steps[0][1]
    assert f"ingested {len(CORPUS)}/{len(CORPUS)}" in ingest.stderr, ingest.stderr[-2000:]
    assert "RUN_SUCCESS" in ci_run.steps[1][1].stdout + ci_run.steps[1][1].stderr


def test_nothing_is_written_outside_the_workspace(ci_run: LifecycleInstance) -> None:
    """Telemetry off (Dagster logs its events to $DAGSTER_HOME/logs/event.log when it is on),
    and every MLflow run keeps its artifacts next to the run's database, never in ./mlruns of
    the directory CI runs from."""
    import sqlite3

    assert not (ci_run.dagster_home / "logs" / "event.log").exists()
    db = ci_run.env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT run_uuid, artifact_uri FROM runs").fetchall()
        experiments = conn.execute(
            "SELECT name, artifact_location FROM experiments WHERE name != 'Default'").fetchall()
    assert runs and experiments
    root = ci_run.root.resolve().as_uri()
    assert all(loc.startswith(root) for _, loc in experiments), experiments
    assert all(uri.startswith(root) for _, uri in runs), [u for _, u in runs]


def test_each_document_was_ingested_in_its_own_successful_run(instance) -> None:
    runs = instance.get_runs(dg.RunsFilter(job_name="ingest_documents"))
    assert len(runs) == len(CORPUS)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    partitions = {r.tags.get("dagster/partition") for r in runs}
    assert len(partitions) == len(CORPUS) and None not in partitions
    stems = {name.removesuffix(".txt") for name in CORPUS}
    assert {p.rsplit("-", 1)[0] for p in partitions} == stems
    for key in ("raw_documents", "extracted_pages", "chunks", "entities"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == partitions, key


def test_lifecycle_run_materialized_every_asset_of_the_job(instance) -> None:
    runs = instance.get_runs(dg.RunsFilter(job_name="lifecycle"))
    assert len(runs) == 1, [r.run_id for r in runs]
    run = runs[0]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    keys = _job_asset_keys("lifecycle")
    expected = {"chunk_embeddings", "instruction_dataset", "base_model", "finetuned_model",
                "retrieval_evaluation", "deployment"}
    assert {k.to_user_string() for k in keys} >= expected
    for key in keys:
        event = instance.get_latest_materialization_event(key)
        assert event is not None, f"{key.to_user_string()}: never materialized"
        assert event.run_id == run.run_id, f"{key.to_user_string()}: not by the lifecycle run"

    def meta(name: str) -> dict:
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    assert meta("chunk_embeddings")["rows"] > 0
    assert meta("instruction_dataset")["test_examples"] > 0
    assert meta("finetuned_model")["model_version"] != meta("base_model")["registered_champion"]


def test_each_candidate_was_evaluated_in_its_own_partition(instance) -> None:
    from resources.evaluation import configured_candidate_names

    candidates = set(configured_candidate_names("ci"))
    assert candidates >= {"champion", "challenger"}
    assert instance.get_materialized_partitions(dg.AssetKey("evaluation")) == candidates
    runs = [r for r in instance.get_runs()
            if r.asset_selection and dg.AssetKey("evaluation") in r.asset_selection]
    assert {r.tags.get("dagster/partition") for r in runs} == candidates
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}


def _gate_rows(markdown: str) -> dict[str, bool]:
    """gate name -> passed, from the promotion's markdown table (| gate | ... | passed | ...)."""
    rows = [line.strip().strip("|").split("|") for line in markdown.splitlines()
            if line.startswith("|")]
    header = [c.strip() for c in rows[0]]
    name_i, passed_i = header.index("gate"), header.index("passed")
    gates = {}
    for cells in rows[2:]:  # skip the header and the |---| line
        passed = re.sub(r"[*_]", "", cells[passed_i]).strip()
        assert passed in {"yes", "no"}, cells
        gates[cells[name_i].strip()] = passed == "yes"
    return gates


def test_promotion_decision_is_recorded_with_its_gates(instance, ci_run) -> None:
    event = instance.get_latest_materialization_event(dg.AssetKey("promotion"))
    assert event is not None, "promotion never materialized"
    run = instance.get_run_by_id(event.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert dg.AssetKey("ab_comparison") in run.asset_selection
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}

    decision = {"promoted": "PROMOTED", "rejected": "REJECTED"}.get(meta["outcome"])
    assert decision is not None, f"promotion outcome {meta['outcome']!r}: not a decision"
    print(f"promotion decision {meta['decision_id']}: {decision} ({meta['summary']})")
    challenger = instance.get_latest_materialization_event(dg.AssetKey("finetuned_model"))
    assert str(meta["challenger_version"]) == (
        challenger.asset_materialization.metadata["model_version"].value)
    gates = _gate_rows(meta["gates"])
    assert {"distinct_versions", "same_test_set", "min_samples"} <= set(gates)
    failed = {g for g, ok in gates.items() if not ok}
    listed = set() if meta["failed_gates"] == "none" else set(meta["failed_gates"].split(", "))
    assert listed == failed
    if decision == "PROMOTED":
        assert not failed and meta["verdict"] == "promote"
        assert meta["champion_after"] == str(meta["challenger_version"])
        assert meta["previous_champion_after"] == meta["champion_before"]
    else:
        assert failed and meta["verdict"] == "reject"
        assert meta["champion_after"] == meta["champion_before"] != meta["challenger_version"]

    # The registry tells the same story as the instance: the last decision in MLflow is this one.
    proc = subprocess.run([venv_bin("llmops"), "models", "--json"], cwd=REPO_ROOT,
                          env=ci_run.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = json.loads(proc.stdout)
    assert models["last_decision"]["decision_id"] == meta["decision_id"]
    assert models["champion"]["version"] == meta["champion_after"]

