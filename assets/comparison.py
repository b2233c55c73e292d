"""`ab_comparison`: champion vs challenger on the same test samples, paired statistics + judges.

Contract with the promotion step (``assets/promotion.py`` reads these metadata keys):

- ``evidence_path``: JSON of ``llmops.promotion.Evidence`` (both candidates' versions, their
  aggregates and check status, per-metric paired comparisons, judge consensus, ``ab_run_id``).
- ``champion_version`` / ``challenger_version``: the registered version numbers that were
  evaluated (from the two ``evaluation`` partitions), so promotion moves exactly those.
- ``results_path``: per-metric results JSON (``metric, n, mean_a, mean_b, diff`` = challenger
  minus champion, ``ci_low, ci_high, test, p_value, p_adjusted, significant, effect_size``).
- ``judge_consensus`` (challenger | champion | tie), ``judge_agreement``, ``judge_failures``,
  ``failures`` (samples failed on either side, excluded from pairing and counted), ``n``
  (paired samples), ``dataset_version``, ``report`` (markdown), ``plot_path`` (PNG),
  ``mlflow_run_id``.

Which two partitions are compared is ``resources.evaluation`` (``ab_baseline`` /
``ab_candidate``, default champion / challenger), so two external endpoints can be compared
the same way. Both must have been evaluated on the same dataset version.
"""


import json
import math
from pathlib import Path
from typing import Any

import dagster as dg

from assets.evaluation import SANE_CHECK, evaluation
from llmops.lineage import code_version, resource_settings
from llmops.paths import data_root
from resources.evaluation import EvaluationResource
from resources.mlflow import MLflowResource

# Per-sample score columns compared (when present in both tables); 0/1 columns are pass/fail.
SCORE_METRICS = ("rouge", "bleu", "string_similarity", "exact_match", "context_precision",
                 "context_recall", "hit", "reciprocal_rank", "faithfulness", "answer_relevancy",
                 "context_relevancy")
COST_METRICS = ("latency_s", "tokens_out", "cost")  # lower is better; reported, not primary


def partition_metadata(instance: dg.DagsterInstance, partition: str) -> dict[str, Any]:
    """Metadata of the latest ``evaluation`` materialization of one candidate partition."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=evaluation.key, asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        raise dg.Failure(f"ab_comparison: evaluation[{partition}] has never been materialized")
    meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    return {**meta, "_dagster_run_id": records[0].run_id}


def check_passed(instance: dg.DagsterInstance, run_id: str) -> bool | None:
    """``evaluation_sane`` of the run that materialized a partition (None: it did not run).

    Matched by run id: the check is emitted with the materialization, and its record carries
    no partition key.
    """
    key = dg.AssetCheckKey(evaluation.key, SANE_CHECK)
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=200):
        if record.run_id != run_id:
            continue
        result = record.event.asset_check_evaluation if record.event else None
        return record.status.value == "SUCCEEDED" and (result is None or bool(result.passed))
    return None


@dg.asset(
    deps=[evaluation],
    group_name="evaluation",
    kinds={"scipy", "mlflow"},
    code_version=code_version(
        "llmops.promotion",
        "llmops.stats",
        "llmops.judges",
        settings=resource_settings("evaluation"),
    ),
    # once every candidate's evaluation is in (none missing, none still running)
    automation_condition=dg.AutomationCondition.eager(),
)
def ab_comparison(
    context: dg.AssetExecutionContext,
    evaluation: EvaluationResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """Paired statistics per metric (bootstrap CI, Wilcoxon/McNemar, Holm) and a judge panel."""
    import pandas as pd

    from llmops.promotion import CandidateEvidence, Evidence, JudgeEvidence, save_evidence

    a_name, b_name = evaluation.ab_baseline, evaluation.ab_candidate
    meta_a = partition_metadata(context.instance, a_name)
    meta_b = partition_metadata(context.instance, b_name)
    if meta_a["dataset_version"] != meta_b["dataset_version"]:
        raise dg.Failure(
            f"ab_comparison: {a_name} was evaluated on dataset {meta_a['dataset_version']} and "
            f"{b_name} on {meta_b['dataset_version']}; re-run both evaluation partitions"
        )
    table_a = pd.read_parquet(meta_a["scores_path"])
    table_b = pd.read_parquet(meta_b["scores_path"])
    ok_a = table_a[table_a["error"].isna()]
    ok_b = table_b[table_b["error"].isna()]
    paired_ids = sorted(set(ok_a["sample_id"]) & set(ok_b["sample_id"]))
    failures = len(set(table_a["sample_id"]) | set(table_b["sample_id"])) - len(paired_ids)
    metrics = [m for m in (*SCORE_METRICS, *COST_METRICS)
               if m in ok_a.columns and m in ok_b.columns
               and ok_a[m].notna().any() and ok_b[m].notna().any()]
    alpha = evaluation.ab_alpha

    report = _paired(ok_a, ok_b, metrics, alpha)
    judge = _judges(ok_a, ok_b, paired_ids, evaluation)

    out_dir = data_root() / "ab" / f"{meta_a['model_version']}-vs-{meta_b['model_version']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [dict(r) for r in report["comparisons"]]
    results_path = out_dir / "results.json"
    results_path.write_text(json.dumps({"alpha": alpha, "metrics": results}, indent=1,
                                       default=_json_default))
    plot_path = report["plot"](out_dir / "differences.png")
    md = report["markdown"]

    mlflow.activate()
    import mlflow as mlf

    tags = {"llmops.kind": "ab_comparison", "champion_version": str(meta_a["model_version"]),
            "challenger_version": str(meta_b["model_version"]),
            "dataset_version": str(meta_a["dataset_version"]),
            "dagster_run_id": context.run.run_id}
    with mlf.start_run(run_name=f"ab-{meta_a['model_version']}-vs-{meta_b['model_version']}",
                       tags=tags) as run:
        mlf.log_params({"alpha": alpha, "n_paired": len(paired_ids), "metrics": ",".join(metrics)})
        for r in results:
            if _finite(r.get("diff")):
                mlf.log_metric(f"diff_{r['metric']}", float(r["diff"]))
        mlf.log_artifact(str(results_path), "ab")
        if plot_path and Path(plot_path).is_file():
            mlf.log_artifact(str(plot_path), "ab")
        mlf.log_text(md, "ab/report.md")
        mlf.log_dict(judge or {"verdict": None}, "ab/judges.json")

    def cand(meta: dict[str, Any], partition: str) -> CandidateEvidence:
        passed = check_passed(context.instance, meta["_dagster_run_id"])
        return CandidateEvidence(
            version=str(meta["model_version"]),
            dataset_version=str(meta["dataset_version"]),
            n_samples=int(meta["n"]),
            n_failed=int(meta["n_failed"]),
            harmful_count=int(meta["safety_harmful"]) if "safety_harmful" in meta else None,
            latency_p95_ms=float(meta["latency_p95_ms"]) if "latency_p95_ms" in meta else None,
            checks_passed=passed,
            failed_checks=[] if passed else [f"{SANE_CHECK}[{partition}]"],
            metrics={m: float(meta[m]) for m in SCORE_METRICS if _finite(meta.get(m))},
        )

    evidence = Evidence(
        model_name=str(meta_b.get("model_name") or mlflow.registered_model),
        champion=cand(meta_a, a_name),
        challenger=cand(meta_b, b_name),
        comparisons=[_metric_comparison(r) for r in results],
        n_paired=len(paired_ids),
        judge=None if judge is None else JudgeEvidence(
            verdict=judge["verdict"], agreement=judge.get("agreement"),
            n_judged=judge.get("n_judged", 0), n_failed=judge.get("n_failed", 0)),
        ab_run_id=run.info.run_id,
        alpha=alpha,
    )
    evidence_path = save_evidence(evidence, out_dir / f"evidence-{run.info.run_id}.json")
    return dg.MaterializeResult(
        metadata={
            "champion_version": str(meta_a["model_version"]),
            "challenger_version": str(meta_b["model_version"]),
            "baseline": a_name,
            "candidate": b_name,
            "dataset_version": str(meta_a["dataset_version"]),
            "n": len(paired_ids),
            "failures": failures,
            "alpha": alpha,
            "results_path": dg.MetadataValue.path(str(results_path)),
            "evidence_path": dg.MetadataValue.path(str(evidence_path)),
            "plot_path": dg.MetadataValue.path(str(plot_path)),
            "report": dg.MetadataValue.md(md),
            "judge_consensus": judge["verdict"] if judge else "unavailable (no llmops.judges)",
            "judge_agreement": judge.get("agreement") if judge else None,
            "judge_failures": judge.get("n_failed", 0) if judge else 0,
            "judges": dg.MetadataValue.json(judge or {}),
            "mlflow_run_id": run.info.run_id,
        }
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _metric_comparison(row: dict[str, Any]) -> Any:
    from llmops.promotion import MetricComparison

    return MetricComparison.from_dict(row)


def _paired(ok_a: Any, ok_b: Any, metrics: list[str], alpha: float) -> dict[str, Any]:
    """llmops.stats on the two per-sample tables: comparisons, markdown, plot function."""
    from llmops import stats

    report = stats.compare_paired(ok_a, ok_b, metrics=metrics, alpha=alpha, id_column="sample_id")
    rows = [c.to_dict() if hasattr(c, "to_dict") else dict(vars(c)) for c in report.comparisons]
    return {
        "comparisons": rows,
        "markdown": stats.markdown_table(report),
        "plot": lambda path: stats.plot_differences(report, path),
    }


def _judges(ok_a: Any, ok_b: Any, ids: list[str], res: EvaluationResource) -> dict[str, Any]:
    """Pairwise judge panel over the paired samples, each pair judged in both answer orders.

    The grounding judge reads the chunks the question retrieved (retrieval does not depend on
    the candidate, so champion and challenger saw the same ones; both lists are merged).
    """
    import json

    from llmops import judges

    a = ok_a.set_index("sample_id")
    b = ok_b.set_index("sample_id")

    def contexts(sid: str) -> list[str]:
        found: list[str] = []
        for table in (a, b):
            if "retrieved_contexts" in table.columns:
                found += json.loads(str(table.at[sid, "retrieved_contexts"]) or "[]")
        return list(dict.fromkeys(found))

    samples = [
        judges.JudgeSample(
            sample_id=sid,
            question=str(a.at[sid, "question"]),
            reference=str(a.at[sid, "reference"]),
            contexts=contexts(sid),
            answer_a=str(a.at[sid, "answer"]),
            answer_b=str(b.at[sid, "answer"]),
        )
        for sid in ids
    ]
    # Offline judges always; an AutoGen LLM judge over the configured endpoints (an ordered
    # fallback chain with timeouts, retries and circuit breakers) when there are any.
    panel = judges.JudgePanel.default([j.model_dump() for j in res.judges])
    result = panel.judge(samples)
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)
