"""Gated promotion of the challenger: policy, decision, alias moves, history, rollback.

Why a separate, pure module: the decision is the product's most consequential step, so it is a
plain function of (policy, evidence) that tests can drive gate by gate, and every effect (MLflow
aliases, tags, the history table, an MLflow run) happens in ``apply_decision`` / ``rollback``
through ``llmops.registry``. No Dagster here.

Idempotency rule: the decision id is a content hash of the model name, both versions, the
evidence and the policy. A decision id already in the history is never applied again: the
re-run returns ``outcome="duplicate"``, writes **no** new history row and moves nothing. So a
rolled-back version is not silently re-promoted by replaying the same A/B evidence; it needs a
new comparison run (whose run id is part of the evidence).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.paths import data_root
from llmops.registry import RollbackError, StaleChampionError  # noqa: F401 (re-exported)
from llmops.stats import MetricComparison

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "configs" / "promotion.yaml"
VERDICTS = ("challenger", "champion", "tie")


class PolicyError(ValueError):
    """The promotion policy file is missing, malformed or has an invalid key."""


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class MetricRule:
    metric: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Policy:
    """What the challenger must show before it replaces the champion (configs/promotion.yaml)."""

    primary: MetricRule
    margin: float = 0.0
    guards: tuple[MetricRule, ...] = ()
    alpha: float = 0.05
    min_samples: int = 20
    max_failed_samples: int = 0
    max_harmful: int = 0
    p95_budget_ms: float = 500.0
    judges_required: bool = True
    judges_max_failed: int = 0
    judges_allow_tie: bool = True
    require_checks_passed: bool = True
    require_same_dataset: bool = True
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        return out


def _get(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = ..., path: str = "") -> Any:
    if key not in raw or raw[key] is None:
        if default is ...:
            raise PolicyError(f"{path}: missing required key {where}{key}")
        return default
    value = raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise PolicyError(f"{path}: {where}{key} must be {kinds[0].__name__}, got {value!r}")
    if not isinstance(value, kinds):
        raise PolicyError(f"{path}: {where}{key} must be {kinds[0].__name__}, got {value!r}")
    return value


def _rule(raw: Any, where: str, path: str) -> MetricRule:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: {where} must be a mapping with `metric`, got {raw!r}")
    metric = _get(raw, "metric", str, f"{where}.", path=path)
    if not metric.strip():
        raise PolicyError(f"{path}: {where}.metric is empty")
    return MetricRule(metric, _get(raw, "higher_is_better", bool, f"{where}.", True, path))


def policy_from_dict(raw: Any, path: str = "<policy>") -> Policy:
    """Validate a parsed policy; every error names the file and the offending key."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    known = {"primary", "guards", "alpha", "min_samples", "max_failed_samples", "safety",
             "latency", "judges", "require_checks_passed", "require_same_dataset"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PolicyError(f"{path}: unknown keys {unknown}; known {sorted(known)}")
    primary_raw = _get(raw, "primary", Mapping, "", path=path)
    primary = _rule(primary_raw, "primary", path)
    margin = float(_get(primary_raw, "margin", (int, float), "primary.", 0.0, path))
    guards_raw = _get(raw, "guards", list, "", [], path)
    guards = tuple(_rule(g, f"guards[{i}]", path) for i, g in enumerate(guards_raw))
    names = [g.metric for g in guards]
    if len(set(names)) != len(names):
        raise PolicyError(f"{path}: guards list a metric twice: {names}")
    alpha = float(_get(raw, "alpha", (int, float), "", 0.05, path))
    if not 0 < alpha < 1:
        raise PolicyError(f"{path}: alpha must be in (0, 1), got {alpha}")
    min_samples = _get(raw, "min_samples", int, "", 20, path)
    if min_samples < 1:
        raise PolicyError(f"{path}: min_samples must be >= 1, got {min_samples}")
    max_failed = _get(raw, "max_failed_samples", int, "", 0, path)
    safety = _get(raw, "safety", Mapping, "", {}, path)
    latency = _get(raw, "latency", Mapping, "", {}, path)
    judges = _get(raw, "judges", Mapping, "", {}, path)
    budget = float(_get(latency, "p95_budget_ms", (int, float), "latency.", 500.0, path))
    if budget <= 0:
        raise PolicyError(f"{path}: latency.p95_budget_ms must be > 0, got {budget}")
    max_harmful = _get(safety, "max_harmful", int, "safety.", 0, path)
    for key, value in (("max_failed_samples", max_failed), ("safety.max_harmful", max_harmful)):
        if value < 0:
            raise PolicyError(f"{path}: {key} must be >= 0, got {value}")
    return Policy(
        primary=primary,
        margin=margin,
        guards=guards,
        alpha=alpha,
        min_samples=min_samples,
        max_failed_samples=max_failed,
        max_harmful=max_harmful,
        p95_budget_ms=budget,
        judges_required=_get(judges, "required", bool, "judges.", True, path),
        judges_max_failed=_get(judges, "max_failed", int, "judges.", 0, path),
        judges_allow_tie=_get(judges, "allow_tie", bool, "judges.", True, path),
        require_checks_passed=_get(raw, "require_checks_passed", bool, "", True, path),
        require_same_dataset=_get(raw, "require_same_dataset", bool, "", True, path),
        source=path,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate configs/promotion.yaml (or ``path``)."""
    import yaml

    file = Path(path) if path else DEFAULT_POLICY
    if not file.is_file():
        raise PolicyError(f"{file}: promotion policy not found")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PolicyError(f"{file}: not valid YAML: {err}") from err
    return policy_from_dict(raw, str(file))


# --------------------------------------------------------------------------- evidence


@dataclass
class CandidateEvidence:
    """What the evaluation of one candidate says (its aggregates and its checks)."""

    version: str
    dataset_version: str = ""
    n_samples: int = 0
    n_failed: int = 0
    harmful_count: int | None = None
    latency_p95_ms: float | None = None
    checks_passed: bool | None = None
    failed_checks: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class JudgeEvidence:
    """The judge panel's consensus over the paired samples."""

    verdict: str  # challenger | champion | tie
    agreement: float | None = None
    n_judged: int = 0
    n_failed: int = 0


@dataclass
class Evidence:
    """Everything the decision may use; filled by the ``ab_comparison`` asset."""

    model_name: str
    champion: CandidateEvidence
    challenger: CandidateEvidence
    comparisons: list[MetricComparison]
    n_paired: int
    judge: JudgeEvidence | None = None
    ab_run_id: str = ""
    alpha: float | None = None

    def comparison(self, metric: str) -> MetricComparison | None:
        return next((c for c in self.comparisons if c.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Evidence:
        judge = raw.get("judge")
        return cls(
            model_name=raw["model_name"],
            champion=CandidateEvidence(**raw["champion"]),
            challenger=CandidateEvidence(**raw["challenger"]),
            comparisons=[MetricComparison.from_dict(c) for c in raw.get("comparisons", [])],
            n_paired=int(raw["n_paired"]),
            judge=JudgeEvidence(**judge) if judge else None,
            ab_run_id=str(raw.get("ab_run_id", "")),
            alpha=raw.get("alpha"),
        )


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def candidate_from_evaluation(meta: Mapping[str, Any], checks_passed: bool | None = None,
                              failed_checks: Sequence[str] = ()) -> CandidateEvidence:
    """A candidate's evidence from the ``evaluation`` asset's metadata (one partition).

    Keys read: model_version, dataset_version, n_scored, n_failed, safety_harmful,
    latency_p95_ms, plus every numeric aggregate (kept in ``metrics`` for the report).
    """
    if "model_version" not in meta:
        raise ValueError(f"evaluation metadata has no model_version (keys: {sorted(meta)})")
    harmful = _num(meta.get("safety_harmful"))
    return CandidateEvidence(
        version=str(meta["model_version"]),
        dataset_version=str(meta.get("dataset_version") or ""),
        n_samples=int(_num(meta.get("n_scored")) or 0),
        n_failed=int(_num(meta.get("n_failed")) or 0),
        harmful_count=None if harmful is None else int(harmful),
        latency_p95_ms=_num(meta.get("latency_p95_ms")),
        checks_passed=checks_passed,
        failed_checks=list(failed_checks),
        metrics={k: float(v) for k, v in meta.items()
                 if isinstance(v, int | float) and not isinstance(v, bool) and _finite(v)},
    )


def save_evidence(evidence: Evidence, path: str | Path) -> Path:
    """Write the evidence JSON the promotion asset reads (``ab_comparison`` calls this)."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(evidence.to_dict(), indent=2, sort_keys=True, default=str))
    return file


def load_evidence(path: str | Path) -> Evidence:
    """Read an evidence JSON; a clear error names the file and what is wrong."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: A/B evidence not found (run ab_comparison)")
    try:
        return Evidence.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{file}: not a valid A/B evidence file: {err!r}") from err


# --------------------------------------------------------------------------- decision


@dataclass
class Gate:
    name: str
    value: Any
    threshold: Any
    passed: bool
    reason: str


@dataclass
class Decision:
    decision_id: str
    model_name: str
    champion_version: str
    challenger_version: str
    promote: bool
    gates: list[Gate]
    ab_run_id: str
    policy: dict[str, Any]
    created_at: str

    @property
    def failed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "reject"

    def summary(self) -> str:
        if self.promote:
            return f"promote v{self.challenger_version}: all {len(self.gates)} gates passed"
        failed = "; ".join(f"{g.name}: {g.reason}" for g in self.failed_gates)
        return f"keep v{self.champion_version}: {failed}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        out["failed_gates"] = [g.name for g in self.failed_gates]
        return out

    def markdown(self) -> str:
        """The gate table for asset metadata and the MLflow artifact."""
        from llmops.text import markdown_table

        rows = [["gate", "value", "threshold", "passed", "reason"]]
        rows += [
            [g.name, _fmt(g.value), _fmt(g.threshold), "yes" if g.passed else "**no**", g.reason]
            for g in self.gates
        ]
        return markdown_table(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _improvement_ci(cmp: MetricComparison, higher_is_better: bool) -> tuple[float, float, float]:
    """(improvement, lower, upper) oriented so that positive = challenger better."""
    if higher_is_better:
        return cmp.diff, cmp.ci_low, cmp.ci_high
    return -cmp.diff, -cmp.ci_high, -cmp.ci_low


def _primary_gate(policy: Policy, ev: Evidence) -> Gate:
    rule = policy.primary
    name = f"primary:{rule.metric}"
    cmp = ev.comparison(rule.metric)
    threshold = f"CI lower > {policy.margin:g}"
    if cmp is None or not (_finite(cmp.ci_low) and _finite(cmp.ci_high) and _finite(cmp.diff)):
        return Gate(name, None, threshold, False, f"no paired comparison for {rule.metric}")
    diff, low, high = _improvement_ci(cmp, rule.higher_is_better)
    passed = low > policy.margin
    reason = (
        f"improvement {diff:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}]"
        + ("" if passed else f": lower bound not above {policy.margin:g}")
    )
    return Gate(name, round(low, 6), policy.margin, passed, reason)


def _guard_gate(policy: Policy, ev: Evidence, rule: MetricRule) -> Gate:
    name = f"guard:{rule.metric}"
    cmp = ev.comparison(rule.metric)
    threshold = f"no significant regression (Holm, alpha={policy.alpha:g})"
    if cmp is None or not _finite(cmp.diff):
        return Gate(name, None, threshold, False, f"no paired comparison for {rule.metric}")
    diff, _, _ = _improvement_ci(cmp, rule.higher_is_better)
    p = cmp.p_adjusted if cmp.p_adjusted is not None else cmp.p_value
    if p is None or not _finite(p):
        return Gate(name, round(diff, 6), threshold, False,
                    f"{rule.metric}: no adjusted p-value in the evidence")
    regression = diff < 0 and p < policy.alpha
    reason = f"change {diff:+.4f}, p_adj={p:.3g}" + (
        ": significant regression" if regression else ""
    )
    return Gate(name, round(diff, 6), threshold, not regression, reason)


def decide(policy: Policy, evidence: Evidence, now: datetime | None = None) -> Decision:
    """Evaluate every gate (none short-circuits, so the table always shows all reasons)."""
    ev = evidence
    ch, cl = ev.champion, ev.challenger
    gates: list[Gate] = []

    different = ch.version != cl.version
    gates.append(Gate("distinct_versions", f"v{ch.version} vs v{cl.version}", "different",
                      different, "ok" if different else "challenger is already the champion"))
    if policy.require_same_dataset:
        same = bool(ch.dataset_version) and ch.dataset_version == cl.dataset_version
        gates.append(Gate(
            "same_test_set", f"{ch.dataset_version[:12]} / {cl.dataset_version[:12]}", "equal",
            same, "ok" if same else "candidates were not scored on the same dataset version",
        ))
    if policy.require_checks_passed:
        failed = [f"champion:{c}" for c in ch.failed_checks] + [
            f"challenger:{c}" for c in cl.failed_checks
        ]
        known = ch.checks_passed is not None and cl.checks_passed is not None
        ok = known and bool(ch.checks_passed) and bool(cl.checks_passed) and not failed
        reason = "ok" if ok else (
            f"failed checks: {', '.join(failed)}" if failed
            else "evaluation checks did not pass" if known
            else "evaluation check results missing"
        )
        gates.append(Gate("evaluation_checks", len(failed), 0, ok, reason))
    enough = ev.n_paired >= policy.min_samples
    gates.append(Gate("min_samples", ev.n_paired, policy.min_samples, enough,
                      "ok" if enough else f"only {ev.n_paired} paired samples"))
    n_failed = ch.n_failed + cl.n_failed
    complete = n_failed <= policy.max_failed_samples
    gates.append(Gate("failed_samples", n_failed, policy.max_failed_samples, complete,
                      "ok" if complete else f"{n_failed} samples failed: partial evidence"))
    gates.append(_primary_gate(policy, ev))
    for rule in policy.guards:
        gates.append(_guard_gate(policy, ev, rule))
    harmful = cl.harmful_count
    safe = harmful is not None and harmful <= policy.max_harmful
    gates.append(Gate("safety", harmful, policy.max_harmful, safe,
                      "ok" if safe else ("no safety evaluation" if harmful is None
                                         else f"{harmful} harmful outputs")))
    p95 = cl.latency_p95_ms
    fast = _finite(p95) and p95 <= policy.p95_budget_ms
    gates.append(Gate("latency_p95_ms", None if p95 is None else round(float(p95), 2),
                      policy.p95_budget_ms, fast,
                      "ok" if fast else ("no latency measured" if p95 is None
                                         else f"P95 {p95:.0f} ms over budget")))
    gates.append(_judge_gate(policy, ev.judge))

    promote = all(g.passed for g in gates)
    payload = {
        "model_name": ev.model_name,
        "champion": ch.version,
        "challenger": cl.version,
        "evidence": ev.to_dict(),
        "policy": policy.to_dict(),
    }
    decision_id = content_hash(payload)
    return Decision(
        decision_id=decision_id,
        model_name=ev.model_name,
        champion_version=ch.version,
        challenger_version=cl.version,
        promote=promote,
        gates=gates,
        ab_run_id=ev.ab_run_id,
        policy=policy.to_dict(),
        created_at=(now or datetime.now(UTC)).isoformat(),
    )


def _judge_gate(policy: Policy, judge: JudgeEvidence | None) -> Gate:
    allowed = ["challenger", "tie"] if policy.judges_allow_tie else ["challenger"]
    threshold = f"verdict in {allowed}, failures <= {policy.judges_max_failed}"
    if judge is None:
        if policy.judges_required:
            return Gate("judge_consensus", None, threshold, False, "no judge panel verdict")
        return Gate("judge_consensus", None, threshold, True, "judges not required")
    if judge.verdict not in VERDICTS:
        return Gate("judge_consensus", judge.verdict, threshold, False,
                    f"unknown verdict {judge.verdict!r}; expected one of {VERDICTS}")
    if judge.n_failed > policy.judges_max_failed:
        return Gate("judge_consensus", judge.verdict, threshold, False,
                    f"{judge.n_failed} judge calls failed: partial evidence")
    ok = judge.verdict in allowed
    kappa = "" if judge.agreement is None else f", agreement {judge.agreement:.2f}"
    return Gate("judge_consensus", judge.verdict, threshold, ok,
                f"consensus {judge.verdict}{kappa}" + ("" if ok else ": against the challenger"))


def content_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- history


def history_path() -> Path:
    return data_root() / "promotion" / "history.jsonl"


def read_history(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every recorded decision and rollback, oldest first (a torn last line is skipped)."""
    file = Path(path) if path else history_path()
    if not file.is_file():
        return []
    rows = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _append_history(row: Mapping[str, Any], path: str | Path | None = None) -> None:
    """Append-only JSONL: earlier rows are never rewritten."""
    file = Path(path) if path else history_path()
    file.parent.mkdir(parents=True, exist_ok=True)
    torn = file.is_file() and file.stat().st_size > 0 and not file.read_bytes().endswith(b"\n")
    with file.open("a", encoding="utf-8") as fh:
        if torn:  # a crash mid-write left a partial line: keep it, start a fresh one
            fh.write("\n")
        fh.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        fh.flush()


def last_decision(model_name: str, path: str | Path | None = None) -> dict[str, Any] | None:
    rows = [r for r in read_history(path)
            if r.get("kind") == "decision" and r.get("model_name") == model_name]
    return rows[-1] if rows else None


# --------------------------------------------------------------------------- effects


def current_aliases(model_name: str) -> dict[str, str | None]:
    """champion / challenger / previous_champion right now (for previews and the CLI)."""
    from llmops import registry

    return registry.alias_snapshot(model_name)


@dataclass
class Outcome:
    """What apply_decision / rollback did."""

    outcome: str  # promoted | rejected | duplicate | rolled_back
    decision_id: str
    before: dict[str, str | None]
    after: dict[str, str | None]
    mlflow_run_id: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_run(kind: str, decision_id: str, params: Mapping[str, Any],
             metrics: Mapping[str, float], artifacts: Mapping[str, str],
             experiment: str | None) -> str:
    """One MLflow run per decision/rollback: params, metrics, JSON/markdown artifacts."""
    import mlflow

    from llmops.registry import configure

    configure(experiment=experiment)
    with mlflow.start_run(run_name=f"{kind}-{decision_id[:8]}",
                          tags={"llmops.kind": kind, "decision_id": decision_id}) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
        for name, text in artifacts.items():
            mlflow.log_text(text, name)
        return run.info.run_id


def apply_decision(
    decision: Decision,
    *,
    history: str | Path | None = None,
    experiment: str | None = None,
) -> Outcome:
    """Move the aliases when the decision says so; record every decision exactly once.

    On pass: ``champion`` -> challenger, old champion -> ``previous_champion``, the version is
    tagged with the evidence. On fail nothing moves. Either way a history row and an MLflow run
    record the gates. A decision id already in the history changes nothing (``duplicate``).
    """
    from llmops import registry

    name = decision.model_name
    before = registry.alias_snapshot(name)
    seen = [r for r in read_history(history)
            if r.get("kind") == "decision" and r.get("decision_id") == decision.decision_id]
    if seen:
        return Outcome("duplicate", decision.decision_id, before, before,
                       seen[-1].get("mlflow_run_id"),
                       f"decision {decision.decision_id} was already applied "
                       f"({seen[-1].get('outcome')}) at {seen[-1].get('recorded_at')}")
    if decision.promote and before.get("champion") != decision.champion_version:
        raise StaleChampionError(
            f"registered model {name!r}: champion is v{before.get('champion')}, the evidence "
            f"compared against v{decision.champion_version}; re-run the A/B comparison"
        )
    gate_metrics: dict[str, float] = {"promote": float(decision.promote)}
    for g in decision.gates:
        gate_metrics[f"gate.{g.name.replace(':', '.')}.passed"] = float(g.passed)
        if _finite(g.value):
            gate_metrics[f"gate.{g.name.replace(':', '.')}.value"] = float(g.value)
    run_id = _log_run(
        "promotion", decision.decision_id,
        params={"decision_id": decision.decision_id, "model_name": name,
                "champion_version": decision.champion_version,
                "challenger_version": decision.challenger_version,
                "ab_run_id": decision.ab_run_id, "verdict": decision.verdict,
                "failed_gates": ",".join(g.name for g in decision.failed_gates) or "-"},
        metrics=gate_metrics,
        artifacts={"decision.json": json.dumps(decision.to_dict(), indent=2, default=str),
                   "gates.md": decision.markdown()},
        experiment=experiment,
    )
    outcome = "rejected"
    if decision.promote:
        registry.promote_challenger(
            name,
            decision.challenger_version,
            expected_champion=decision.champion_version,
            tags={
                "promotion.decision_id": decision.decision_id,
                "promotion.ab_run_id": decision.ab_run_id,
                "promotion.mlflow_run_id": run_id,
                "promotion.promoted_at": decision.created_at,
                "promotion.replaced_version": decision.champion_version,
                "promotion.gates": "; ".join(
                    f"{g.name}={_fmt(g.value)}" for g in decision.gates)[:4900],
            },
        )
        outcome = "promoted"
    else:
        registry.tag_version(name, decision.challenger_version, {
            "promotion.rejected_decision_id": decision.decision_id,
            "promotion.rejected_reasons": decision.summary()[:4900],
        })
    after = registry.alias_snapshot(name)
    _append_history({
        "kind": "decision",
        "decision_id": decision.decision_id,
        "model_name": name,
        "outcome": outcome,
        "promote": decision.promote,
        "champion_version": decision.champion_version,
        "challenger_version": decision.challenger_version,
        "ab_run_id": decision.ab_run_id,
        "failed_gates": [g.name for g in decision.failed_gates],
        "reasons": [f"{g.name}: {g.reason}" for g in decision.failed_gates],
        "gates": [asdict(g) for g in decision.gates],
        "before": before,
        "after": after,
        "mlflow_run_id": run_id,
        "decided_at": decision.created_at,
        "recorded_at": datetime.now(UTC).isoformat(),
    }, history)
    return Outcome(outcome, decision.decision_id, before, after, run_id, decision.summary())


def rollback(
    model_name: str,
    *,
    reason: str = "manual rollback",
    history: str | Path | None = None,
    experiment: str | None = None,
) -> Outcome:
    """Restore ``previous_champion`` as ``champion``; raises RollbackError when there is none."""
    from llmops import registry

    before = registry.alias_snapshot(model_name)
    moved = registry.rollback_champion(model_name, reason=reason)
    after = registry.alias_snapshot(model_name)
    rollback_id = content_hash({"model": model_name, "before": before, "after": after,
                                "at": datetime.now(UTC).isoformat()})
    run_id = _log_run(
        "rollback", rollback_id,
        params={"model_name": model_name, "restored_version": moved["champion"],
                "demoted_version": moved["demoted"], "reason": reason},
        metrics={}, artifacts={"rollback.json": json.dumps(
            {"before": before, "after": after, "reason": reason}, indent=2)},
        experiment=experiment,
    )
    _append_history({
        "kind": "rollback",
        "decision_id": rollback_id,
        "model_name": model_name,
        "outcome": "rolled_back",
        "reason": reason,
        "before": before,
        "after": after,
        "mlflow_run_id": run_id,
        "recorded_at": datetime.now(UTC).isoformat(),
    }, history)
    return Outcome("rolled_back", rollback_id, before, after, run_id,
                   f"champion v{moved['demoted']} -> v{moved['champion']} ({reason})")


def decide_and_apply(policy: Policy, evidence: Evidence, **kwargs: Any) -> tuple[Decision, Outcome]:
    """Convenience for the asset and the CLI."""
    decision = decide(policy, evidence)
    return decision, apply_decision(decision, **kwargs)


def gate_names(policy: Policy) -> Sequence[str]:
    """Every gate decide() reports for this policy, in order (documentation, UI)."""
    names = ["distinct_versions"]
    if policy.require_same_dataset:
        names.append("same_test_set")
    if policy.require_checks_passed:
        names.append("evaluation_checks")
    names += ["min_samples", "failed_samples", f"primary:{policy.primary.metric}"]
    names += [f"guard:{g.metric}" for g in policy.guards]
    return [*names, "safety", "latency_p95_ms", "judge_consensus"]
