"""Gated promotion: decide from the A/B evidence, move the MLflow aliases only on a pass.

Thin: the gates, the alias moves, the history and the MLflow run live in ``llmops.promotion``.
This asset reads what ``ab_comparison`` recorded (an evidence JSON, ``llmops.promotion.Evidence``),
re-checks the evaluation's asset checks in the instance (a blocking check failure in the same run
already stops this asset; a failure in an earlier run is caught here), decides and applies.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from llmops.lineage import code_version
from resources.mlflow import MLflowResource

AB_COMPARISON = dg.AssetKey("ab_comparison")
EVALUATION = dg.AssetKey("evaluation")
EVIDENCE_KEY = "evidence_path"  # metadata key ab_comparison sets: JSON of promotion.Evidence


class PromotionConfig(dg.Config):
    policy: str = "configs/promotion.yaml"  # relative to the project root
    evaluation_checks: list[str] = ["evaluation_sane"]  # checks on `evaluation` that must pass
    dry_run: bool = False  # decide and record nothing (preview the gates)


def _latest_metadata(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized: run the A/B first")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def failed_evaluation_checks(instance: dg.DagsterInstance, names: list[str],
                             partitions: set[str] | None = None) -> list[str]:
    """``name[partition]`` of every evaluation check whose latest execution (per partition,
    i.e. per candidate; only ``partitions`` when given) did not pass; a planned-but-never-
    finished check counts as failed."""
    failed = []
    for name in names:
        key = dg.AssetCheckKey(EVALUATION, name)
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
        seen: set[str | None] = set()
        for record in records:  # newest first
            if record.partition in seen or (
                partitions and record.partition is not None and record.partition not in partitions
            ):  # check records may carry no partition: then the latest one counts
                continue
            seen.add(record.partition)
            evaluation = record.event.asset_check_evaluation if record.event else None
            if record.status.value != "SUCCEEDED" or (evaluation is not None
                                                     and not evaluation.passed):
                failed.append(f"{name}[{record.partition}]" if record.partition else name)
    return sorted(failed)


def _policy_path(raw: str) -> Path:
    path = Path(raw)
    return path if path.is_absolute() else Path(__file__).resolve().parents[1] / path


@dg.asset(
    deps=[AB_COMPARISON],
    group_name="evaluation",
    kinds={"mlflow"},
    code_version=code_version("llmops.promotion", "llmops.registry"),
    automation_condition=dg.AutomationCondition.eager(),
)
def promotion(
    context: dg.AssetExecutionContext, config: PromotionConfig, mlflow: MLflowResource
) -> dg.MaterializeResult:
    """Champion vs challenger through configs/promotion.yaml; on pass `champion` moves."""
    from llmops import promotion as promo

    policy = promo.load_policy(_policy_path(config.policy))
    meta = _latest_metadata(context, AB_COMPARISON)
    if EVIDENCE_KEY not in meta:
        raise dg.Failure(
            f"ab_comparison metadata has no {EVIDENCE_KEY!r}: it must record the A/B evidence "
            "(llmops.promotion.Evidence as JSON) for the promotion"
        )
    evidence = promo.load_evidence(meta[EVIDENCE_KEY])
    compared = {str(meta[k]) for k in ("baseline", "candidate") if meta.get(k)} or None
    failed = failed_evaluation_checks(context.instance, list(config.evaluation_checks), compared)
    if failed:  # the instance knows better than the evidence file: never promote past a failure
        evidence.challenger.checks_passed = False
        evidence.challenger.failed_checks = sorted(set(evidence.challenger.failed_checks) |
                                                   set(failed))
    mlflow.activate()
    decision = promo.decide(policy, evidence)
    if config.dry_run:
        outcome = None
        after = before = promo.current_aliases(evidence.model_name)
    else:
        outcome = promo.apply_decision(decision, experiment=mlflow.experiment)
        before, after = outcome.before, outcome.after
    context.log.info(decision.summary())
    return dg.MaterializeResult(
        metadata={
            "decision_id": decision.decision_id,
            "verdict": decision.verdict,
            "outcome": outcome.outcome if outcome else "dry_run",
            "summary": decision.summary(),
            "gates": dg.MetadataValue.md(decision.markdown()),
            "failed_gates": ", ".join(g.name for g in decision.failed_gates) or "none",
            "champion_before": str(before.get("champion")),
            "champion_after": str(after.get("champion")),
            "previous_champion_after": str(after.get("previous_champion")),
            "challenger_version": decision.challenger_version,
            "ab_run_id": decision.ab_run_id,
            "mlflow_run_id": (outcome.mlflow_run_id or "") if outcome else "",
            "policy": str(policy.source),
        },
        data_version=dg.DataVersion(decision.decision_id),
    )


class RollbackConfig(dg.Config):
    reason: str = "rollback job"


@dg.op(required_resource_keys={"mlflow"})
def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig) -> dict:
    """Restore the previous champion (the `rollback_job`); fails clearly when there is none."""
    from llmops.promotion import RollbackError, rollback

    mlflow = context.resources.mlflow
    mlflow.activate()
    try:
        outcome = rollback(mlflow.registered_model, reason=config.reason,
                           experiment=mlflow.experiment)
    except RollbackError as err:
        raise dg.Failure(str(err)) from err
    context.log.info(outcome.message)
    context.add_output_metadata({"before": str(outcome.before), "after": str(outcome.after),
                                 "history_id": outcome.decision_id})
    return outcome.to_dict()
