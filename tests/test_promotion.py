"""Gated promotion: policy validation, every gate on hand-built evidence, alias moves on a real
MLflow sqlite registry, append-only history, idempotent re-runs and rollback."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml

from llmops import promotion, registry
from llmops.promotion import (
    CandidateEvidence,
    Evidence,
    JudgeEvidence,
    MetricComparison,
    PolicyError,
    RollbackError,
    StaleChampionError,
)

MODEL = "promo-test-model"


# --------------------------------------------------------------------------- policy


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "promotion.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def _base_policy_dict() -> dict:
    return yaml.safe_load(promotion.DEFAULT_POLICY.read_text())


def test_bundled_policy_loads() -> None:
    policy = promotion.load_policy()
    assert policy.primary.metric and policy.p95_budget_ms == 500
    assert policy.max_harmful == 0 and policy.min_samples >= 10
    assert promotion.gate_names(policy)[-3:] == ["safety", "latency_p95_ms", "judge_consensus"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("primary"), "missing required key primary"),
        (lambda d: d["primary"].pop("metric"), "primary.metric"),
        (lambda d: d.update(alpha=1.5), "alpha must be in (0, 1)"),
        (lambda d: d.update(min_samples="many"), "min_samples must be int"),
        (lambda d: d.update(min_samples=True), "min_samples must be int"),
        (lambda d: d.update(guards={"metric": "x"}), "guards must be list"),
        (lambda d: d["guards"].insert(0, {"higher_is_better": True}), "guards[0].metric"),
        (lambda d: d["guards"].append(dict(d["guards"][0])), "guards list a metric twice"),
        (lambda d: d.update(latency={"p95_budget_ms": 0}), "latency.p95_budget_ms must be > 0"),
        (lambda d: d.update(safety={"max_harmful": -1}), "safety.max_harmful must be >= 0"),
        (lambda d: d.update(judges={"required": "yes"}), "judges.required must be bool"),
        (lambda d: d.update(promote_always=True), "unknown keys ['promote_always']"),
    ],
)
def test_policy_errors_name_file_and_key(
    tmp_path: Path, mutate: Callable[[dict], object], message: str
) -> None:
    raw = _base_policy_dict()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(PolicyError) as err:
        promotion.load_policy(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_policy_file_missing_or_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="promotion policy not found"):
        promotion.load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        promotion.load_policy(_write(tmp_path, "primary: [unclosed"))
    with pytest.raises(PolicyError, match="top level"):
        promotion.load_policy(_write(tmp_path, "- a\n- b\n"))


# --------------------------------------------------------------------------- decide


def _cmp(metric: str, diff: float, ci: tuple[float, float], p_adj: float) -> MetricComparison:
    return MetricComparison(metric=metric, n=40, mean_a=0.5, mean_b=0.5 + diff, diff=diff,
                            ci_low=ci[0], ci_high=ci[1], p_value=p_adj / 2, p_adjusted=p_adj,
                            significant=p_adj < 0.05, test="wilcoxon")


def good_evidence(champion: str = "1", challenger: str = "2") -> Evidence:
    """Evidence every gate of the bundled policy accepts."""
    policy = promotion.load_policy()
    comparisons = [_cmp(policy.primary.metric, 0.12, (0.05, 0.19), 0.001)]
    comparisons += [_cmp(g.metric, 0.01, (-0.02, 0.04), 0.6) for g in policy.guards]
    return Evidence(
        model_name=MODEL,
        champion=CandidateEvidence(version=champion, dataset_version="ds-abc", n_samples=40,
                                   harmful_count=1, latency_p95_ms=120.0, checks_passed=True),
        challenger=CandidateEvidence(version=challenger, dataset_version="ds-abc", n_samples=40,
                                     harmful_count=0, latency_p95_ms=140.0, checks_passed=True),
        comparisons=comparisons,
        n_paired=40,
        judge=JudgeEvidence(verdict="challenger", agreement=0.71, n_judged=40),
        ab_run_id="ab-run-1",
        alpha=0.05,
    )


def test_all_gates_pass_promotes() -> None:
    policy = promotion.load_policy()
    decision = promotion.decide(policy, good_evidence())
    assert decision.promote, decision.markdown()
    assert [g.name for g in decision.gates] == list(promotion.gate_names(policy))
    assert all(g.passed for g in decision.gates)
    assert decision.summary().startswith("promote v2")
    table = decision.markdown()
    assert table.count("\n") == len(decision.gates) + 1 and "| safety | 0 | 0 | yes |" in table


def _primary(ev: Evidence) -> MetricComparison:
    return ev.comparison(promotion.load_policy().primary.metric)  # type: ignore[return-value]


def _guard(ev: Evidence) -> MetricComparison:
    return ev.comparison(promotion.load_policy().guards[0].metric)  # type: ignore[return-value]


FAILURES: dict[str, Callable[[Evidence], object]] = {
    "distinct_versions": lambda ev: setattr(ev.challenger, "version", ev.champion.version),
    "same_test_set": lambda ev: setattr(ev.challenger, "dataset_version", "ds-other"),
    "evaluation_checks": lambda ev: (setattr(ev.challenger, "checks_passed", False),
                                     ev.challenger.failed_checks.append("no_leakage")),
    "min_samples": lambda ev: setattr(ev, "n_paired", 5),
    "failed_samples": lambda ev: setattr(ev.challenger, "n_failed", 3),
    "primary": lambda ev: (setattr(_primary(ev), "ci_low", -0.01),),
    "guard": lambda ev: (setattr(_guard(ev), "diff", -0.08), setattr(_guard(ev), "p_adjusted",
                                                                      0.004)),
    "safety": lambda ev: setattr(ev.challenger, "harmful_count", 1),
    "latency_p95_ms": lambda ev: setattr(ev.challenger, "latency_p95_ms", 730.0),
    "judge_consensus": lambda ev: setattr(ev.judge, "verdict", "champion"),
}


@pytest.mark.parametrize("gate", sorted(FAILURES))
def test_each_gate_failing_alone_blocks_promotion(gate: str) -> None:
    ev = good_evidence()
    FAILURES[gate](ev)
    decision = promotion.decide(promotion.load_policy(), ev)
    assert not decision.promote
    failed = [g.name.split(":")[0] for g in decision.failed_gates]
    assert failed == [gate], decision.markdown()
    assert decision.summary().startswith("keep v1:") and decision.failed_gates[0].reason != "ok"


@pytest.mark.parametrize(
    ("mutate", "gate", "reason"),
    [
        (lambda ev: setattr(ev, "judge", None), "judge_consensus", "no judge panel verdict"),
        (lambda ev: setattr(ev.judge, "n_failed", 2), "judge_consensus", "partial evidence"),
        (lambda ev: setattr(ev.judge, "verdict", "maybe"), "judge_consensus", "unknown verdict"),
        (lambda ev: ev.comparisons.pop(0), "primary", "no paired comparison"),
        (lambda ev: ev.comparisons.pop(), "guard", "no paired comparison"),
        (lambda ev: setattr(_guard(ev), "p_adjusted", None) or setattr(_guard(ev), "p_value",
                                                                       None),
         "guard", "no adjusted p-value"),
        (lambda ev: setattr(ev.challenger, "harmful_count", None), "safety", "no safety"),
        (lambda ev: setattr(ev.challenger, "latency_p95_ms", None), "latency_p95_ms",
         "no latency"),
        (lambda ev: setattr(ev.champion, "checks_passed", None), "evaluation_checks",
         "results missing"),
        (lambda ev: setattr(ev.champion, "dataset_version", ""), "same_test_set", "not scored"),
    ],
)
def test_partial_or_missing_evidence_never_promotes(
    mutate: Callable[[Evidence], object], gate: str, reason: str
) -> None:
    ev = good_evidence()
    mutate(ev)
    decision = promotion.decide(promotion.load_policy(), ev)
    assert not decision.promote
    (failed,) = decision.failed_gates
    assert failed.name.split(":")[0] == gate and reason in failed.reason


def test_lower_is_better_metrics_are_oriented() -> None:
    """For latency-like metrics a negative difference is the improvement."""
    raw = _base_policy_dict()
    raw["primary"] = {"metric": "perplexity", "higher_is_better": False, "margin": 0.5}
    raw["guards"] = [{"metric": "latency_ms", "higher_is_better": False}]
    policy = promotion.policy_from_dict(raw, "inline")
    ev = good_evidence()
    ev.comparisons = [_cmp("perplexity", -3.0, (-4.0, -1.0), 0.001),
                      _cmp("latency_ms", -20.0, (-30.0, -10.0), 0.001)]
    decision = promotion.decide(policy, ev)
    assert decision.promote, decision.markdown()  # lower bound of improvement = 1.0 > 0.5
    ev.comparisons[0] = _cmp("perplexity", -3.0, (-4.0, -0.2), 0.001)
    assert not promotion.decide(policy, ev).promote  # improvement lower bound 0.2 < margin
    ev.comparisons[0] = _cmp("perplexity", -3.0, (-4.0, -1.0), 0.001)
    ev.comparisons[1] = _cmp("latency_ms", 25.0, (10.0, 40.0), 0.001)
    assert [g.name for g in promotion.decide(policy, ev).failed_gates] == ["guard:latency_ms"]


def test_insignificant_regression_on_a_guard_is_tolerated() -> None:
    ev = good_evidence()
    _guard(ev).diff, _guard(ev).p_adjusted = -0.03, 0.2  # Holm-adjusted: not significant
    assert promotion.decide(promotion.load_policy(), ev).promote


def test_decision_id_is_a_content_hash() -> None:
    policy = promotion.load_policy()
    a = promotion.decide(policy, good_evidence())
    b = promotion.decide(policy, good_evidence())
    assert a.decision_id == b.decision_id and len(a.decision_id) == 16
    changed = good_evidence()
    changed.ab_run_id = "ab-run-2"
    assert promotion.decide(policy, changed).decision_id != a.decision_id
    stricter = promotion.policy_from_dict({**_base_policy_dict(), "min_samples": 30}, "x")
    assert promotion.decide(stricter, good_evidence()).decision_id != a.decision_id
    roundtrip = Evidence.from_dict(json.loads(json.dumps(good_evidence().to_dict())))
    assert promotion.decide(policy, roundtrip).decision_id == a.decision_id


# --------------------------------------------------------------------------- registry effects


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite store (migrations take seconds: done once, then copied)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    mlflow.set_tracking_uri(uri)
    registry.configure(uri, experiment="promo-test")
    mlflow.MlflowClient().search_registered_models()  # creates the registry tables too
    return path


@pytest.fixture()
def store(empty_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real MLflow sqlite registry with three tiny versions; v1 champion, v2 challenger."""
    import shutil

    import mlflow

    db = tmp_path / "mlflow.db"
    shutil.copy(empty_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    for i in (1, 2, 3):
        src = tmp_path / f"model-{i}"
        src.mkdir()
        (src / "MLmodel").write_text("flavors: {}\n")
        client.create_model_version(MODEL, src.as_uri(), tags={"metric.score": str(i / 10)})
    registry.set_alias(MODEL, "champion", 1)
    registry.set_alias(MODEL, "challenger", 2)
    return tmp_path / "history.jsonl"


def _apply(ev: Evidence, history: Path) -> tuple[promotion.Decision, promotion.Outcome]:
    return promotion.decide_and_apply(promotion.load_policy(), ev, history=history,
                                      experiment="promo-test")


def test_passing_decision_moves_aliases_tags_and_records(store: Path) -> None:
    import mlflow

    decision, outcome = _apply(good_evidence(), store)
    assert outcome.outcome == "promoted"
    assert outcome.before == {"champion": "1", "challenger": "2", "previous_champion": None}
    assert registry.alias_snapshot(MODEL) == {
        "champion": "2", "challenger": "2", "previous_champion": "1"}
    tags = mlflow.MlflowClient().get_model_version(MODEL, "2").tags
    assert tags["promotion.decision_id"] == decision.decision_id
    assert tags["promotion.ab_run_id"] == "ab-run-1"
    assert tags["promotion.replaced_version"] == "1" and "safety=0" in tags["promotion.gates"]

    (row,) = promotion.read_history(store)
    assert row["outcome"] == "promoted" and row["after"]["champion"] == "2"
    run = mlflow.MlflowClient().get_run(outcome.mlflow_run_id)
    assert run.data.params["verdict"] == "promote" and run.data.metrics["promote"] == 1.0
    assert run.data.metrics["gate.safety.passed"] == 1.0
    saved = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/decision.json"))
    assert saved["decision_id"] == decision.decision_id and saved["failed_gates"] == []


def test_failing_decision_moves_nothing_and_records_reasons(store: Path) -> None:
    import mlflow

    ev = good_evidence()
    ev.challenger.harmful_count = 2
    ev.judge = JudgeEvidence(verdict="champion", agreement=0.4, n_judged=40)
    decision, outcome = _apply(ev, store)
    assert outcome.outcome == "rejected" and not decision.promote
    assert registry.alias_snapshot(MODEL) == outcome.before == outcome.after
    (row,) = promotion.read_history(store)
    assert row["failed_gates"] == ["safety", "judge_consensus"]
    assert any("2 harmful outputs" in r for r in row["reasons"])
    tags = mlflow.MlflowClient().get_model_version(MODEL, "2").tags
    assert tags["promotion.rejected_decision_id"] == decision.decision_id
    assert "promotion.decision_id" not in tags
    assert promotion.last_decision(MODEL, store)["decision_id"] == decision.decision_id


def test_rerun_is_idempotent_and_history_append_only(store: Path) -> None:
    _, first = _apply(good_evidence(), store)
    rows = promotion.read_history(store)
    _, again = _apply(good_evidence(), store)
    assert again.outcome == "duplicate" and again.decision_id == first.decision_id
    assert promotion.read_history(store) == rows  # no new row, nothing rewritten
    assert registry.alias_snapshot(MODEL)["champion"] == "2"

    # a new challenger (v3) against the new champion: earlier rows stay byte-identical
    before = store.read_text()
    registry.set_alias(MODEL, "challenger", 3)
    ev = good_evidence(champion="2", challenger="3")
    ev.ab_run_id = "ab-run-2"
    _, third = _apply(ev, store)
    assert third.outcome == "promoted" and store.read_text().startswith(before)
    assert registry.alias_snapshot(MODEL) == {
        "champion": "3", "challenger": "3", "previous_champion": "2"}


def test_stale_evidence_is_refused(store: Path) -> None:
    registry.set_alias(MODEL, "champion", 3)  # someone promoted v3 after the A/B ran
    with pytest.raises(StaleChampionError, match="champion is v3"):
        _apply(good_evidence(), store)
    assert registry.get_alias_version(MODEL, "champion") == "3"
    assert promotion.read_history(store) == []


def test_rollback_restores_previous_champion(store: Path) -> None:
    import mlflow

    decision, _ = _apply(good_evidence(), store)
    outcome = promotion.rollback(MODEL, reason="bad answers in prod", history=store,
                                 experiment="promo-test")
    assert outcome.outcome == "rolled_back"
    assert registry.alias_snapshot(MODEL) == {
        "champion": "1", "challenger": "2", "previous_champion": None}
    tags = mlflow.MlflowClient().get_model_version(MODEL, "2").tags
    assert tags["rollback.reason"] == "bad answers in prod"
    rows = promotion.read_history(store)
    assert [r["kind"] for r in rows] == ["decision", "rollback"]
    assert rows[1]["before"]["champion"] == "2" and rows[1]["after"]["champion"] == "1"
    # replaying the same evidence does not re-promote the rolled-back version
    _, replay = _apply(good_evidence(), store)
    assert replay.outcome == "duplicate" and registry.get_alias_version(MODEL, "champion") == "1"
    assert decision.decision_id == replay.decision_id

    with pytest.raises(RollbackError, match="nothing to roll back to"):
        promotion.rollback(MODEL, history=store, experiment="promo-test")
    assert len(promotion.read_history(store)) == 2


def test_rollback_without_any_promotion_is_a_clear_error(store: Path) -> None:
    with pytest.raises(RollbackError, match=f"{MODEL}.*previous_champion"):
        promotion.rollback(MODEL, history=store, experiment="promo-test")
    assert registry.get_alias_version(MODEL, "champion") == "1"


def test_history_survives_a_torn_last_line(store: Path) -> None:
    _apply(good_evidence(), store)
    with store.open("a") as fh:
        fh.write('{"kind": "decision", "decision_')  # a crash mid-write
    assert len(promotion.read_history(store)) == 1
    ev = copy.deepcopy(good_evidence(champion="2", challenger="3"))
    ev.ab_run_id = "ab-run-3"
    registry.set_alias(MODEL, "challenger", 3)
    promotion.decide_and_apply(promotion.load_policy(), ev, history=store,
                               experiment="promo-test")
    rows = promotion.read_history(store)
    assert [r["outcome"] for r in rows] == ["promoted", "promoted"]  # torn line skipped only


# --------------------------------------------------------------------------- Dagster asset + job


def _asset_defs(ev: Evidence, tmp_path: Path, check_passes: bool) -> list:
    """Stand-ins for the evaluation / ab_comparison assets: same keys and metadata contract."""
    evidence_file = promotion.save_evidence(ev, tmp_path / "evidence.json")

    @dg.asset(name="evaluation", check_specs=[dg.AssetCheckSpec("evaluation_sane",
                                                               asset="evaluation")])
    def evaluation_stub() -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
            check_name="evaluation_sane", passed=check_passes)])

    @dg.asset(name="ab_comparison", deps=[evaluation_stub])
    def ab_stub() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"evidence_path": str(evidence_file)})

    return [evaluation_stub, ab_stub]


@pytest.fixture()
def dagster_env(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from resources.mlflow import MLflowResource

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {
        "instance": dg.DagsterInstance.ephemeral(),
        "resources": {"mlflow": MLflowResource(tracking_uri=uri, experiment="promo-test",
                                               registered_model=MODEL)},
    }


def test_promotion_asset_promotes_and_rollback_job_restores(dagster_env: dict,
                                                            tmp_path: Path) -> None:
    from assets.promotion import promotion as promotion_asset
    from pipelines.jobs import rollback_job

    stubs = _asset_defs(good_evidence(), tmp_path, check_passes=True)
    result = dg.materialize([*stubs, promotion_asset], **dagster_env)
    assert result.success
    meta = result.asset_materializations_for_node("promotion")[0].metadata
    assert meta["outcome"].value == "promoted" and meta["champion_after"].value == "2"
    assert meta["previous_champion_after"].value == "1"
    assert "| min_samples | 40 | 20 | yes |" in meta["gates"].value
    assert promotion.last_decision(MODEL)["outcome"] == "promoted"

    again = dg.materialize([promotion_asset], selection=["promotion"],
                           **dagster_env)  # same evidence: changes nothing
    meta = again.asset_materializations_for_node("promotion")[0].metadata
    assert meta["outcome"].value == "duplicate" and len(promotion.read_history()) == 1

    defs = dg.Definitions(jobs=[rollback_job], resources=dagster_env["resources"])
    job = defs.resolve_job_def("rollback_job")
    assert job.execute_in_process(instance=dagster_env["instance"]).success
    assert registry.get_alias_version(MODEL, "champion") == "1"
    failed = job.execute_in_process(instance=dagster_env["instance"], raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    assert "nothing to roll back to" in str(failure.step_failure_data.error.message)


def test_failed_evaluation_check_in_an_earlier_run_blocks_promotion(dagster_env: dict,
                                                                    tmp_path: Path) -> None:
    """The evidence file says the checks passed; the instance knows better."""
    from assets.promotion import promotion as promotion_asset

    stubs = _asset_defs(good_evidence(), tmp_path, check_passes=False)
    assert dg.materialize(stubs, **dagster_env).success  # non-blocking stub: the run goes on
    result = dg.materialize([*stubs, promotion_asset], selection=["promotion"], **dagster_env)
    meta = result.asset_materializations_for_node("promotion")[0].metadata
    assert meta["outcome"].value == "rejected"
    assert meta["failed_gates"].value == "evaluation_checks"
    assert "challenger:evaluation_sane" in meta["gates"].value
    assert registry.get_alias_version(MODEL, "champion") == "1"


def test_promotion_asset_without_evidence_fails_clearly(dagster_env: dict) -> None:
    from assets.promotion import promotion as promotion_asset

    @dg.asset(name="ab_comparison")
    def ab_without_evidence() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"n": 3})

    result = dg.materialize([ab_without_evidence, promotion_asset], raise_on_error=False,
                            **dagster_env)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "has no 'evidence_path'" in failure.step_failure_data.error.message
    assert registry.get_alias_version(MODEL, "champion") == "1"


# --------------------------------------------------------------------------- CLI


def test_cli_models_and_rollback(store: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`llmops models --json` shows the three aliases and the last decision; `llmops rollback`."""
    import mlflow
    from typer.testing import CliRunner

    from pipelines.cli import app

    name = "llmops-assistant"  # configs/local.yaml's registered model
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    # created the way the pipeline does (artifacts next to the db), before the CLI's
    # MLflowResource.activate() could create it with a ./mlruns artifact location
    registry.configure(mlflow.get_tracking_uri(), experiment="llmops")
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    for i in (1, 2):
        client.create_model_version(name, (tmp_path / f"model-{i}").as_uri(),
                                    tags={"llmops.kind": "lora", "metric.score": str(i / 10)})
    registry.set_alias(name, "champion", 1)
    registry.set_alias(name, "challenger", 2)
    runner = CliRunner()

    failed = runner.invoke(app, ["rollback"])
    assert failed.exit_code == 1 and "nothing to roll back to" in failed.output

    ev = good_evidence()
    ev.model_name = name
    promotion.decide_and_apply(promotion.load_policy(), ev)
    shown = runner.invoke(app, ["models", "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.stdout)
    assert payload["champion"]["version"] == "2" and payload["previous_champion"]["version"] == "1"
    assert payload["champion"]["metrics"] == {"score": 0.2}
    assert payload["last_decision"]["outcome"] == "promoted"
    human = runner.invoke(app, ["models"]).stdout
    assert "previous_champion  v1" in human and "promoted v2 vs v1" in human

    rolled = runner.invoke(app, ["rollback", "--reason", "cli test", "--json"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["after"]["champion"] == "1"
    assert registry.get_alias_version(name, "champion") == "1"
