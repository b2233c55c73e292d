"""`evaluation`: every candidate answers the test split RAG-style and is scored per sample.

One partition per candidate (``resources.evaluation`` config; default ``champion`` and
``challenger``, external endpoints add their names). Per-sample scores go to Parquet under the
data root and to MLflow (``mlflow.log_table``) in an evaluation run that is a child of the
candidate model version's run (tag ``mlflow.parentRunId``; the version gets the tag
``evaluation_run_id``). The blocking check ``evaluation_sane`` (enough samples scored, failures
under the threshold, no leakage) stops anything downstream (A/B, promotion) in the same run.

Metadata the A/B step reads: ``candidate``, ``model_name``, ``model_version`` (the resolved
number, so the comparison pairs exactly those versions), ``dataset_version``,
``scores_path`` (Parquet), ``n``, ``n_scored``, ``n_failed``, aggregates and ``targets``.
"""


import json
import math
import time
from typing import Any

import dagster as dg

from assets.dataset import instruction_dataset
from assets.structuring import chunk_embeddings
from assets.training import base_model, finetuned_model, upstream_metadata
from llmops.lineage import code_version, resource_settings
from llmops.paths import data_root
from resources.evaluation import EvaluationResource, configured_candidate_names
from resources.knowledge import EmbedderResource, VectorStoreResource
from resources.mlflow import MLflowResource

candidates_partitions = dg.StaticPartitionsDefinition(configured_candidate_names())
SANE_CHECK = "evaluation_sane"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:80]


@dg.asset(
    partitions_def=candidates_partitions,
    deps=[instruction_dataset, chunk_embeddings, base_model, finetuned_model],
    group_name="evaluation",
    kinds={"ragas", "mlflow"},
    pool="training",
    code_version=code_version(
        "llmops.evaluation", "llmops.rag", "llmops.safety", "llmops.judges",
        settings=resource_settings("evaluation"),
    ),
    # A new challenger (or base, dataset, knowledge base) re-evaluates every candidate; A/B
    # and promotion follow the same way, so a training run is the whole retraining chain.
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            SANE_CHECK,
            asset="evaluation",
            blocking=True,
            description="Enough samples scored, failure rate under the threshold, no leakage of "
            "evaluation documents into pre-training or the fine-tuning train split.",
        )
    ],
)
def evaluation(
    context: dg.AssetExecutionContext,
    evaluation: EvaluationResource,
    vector_store: VectorStoreResource,
    embedder: EmbedderResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """RAG answers of one candidate on the test split: ragas, retrieval, latency, cost, safety."""
    from llmops.evaluation import (
        assert_no_leakage,
        evaluate_candidate,
        load_samples,
        pretrain_documents,
        summarize,
        summary_markdown,
        targets_markdown,
        write_parquet,
    )
    from llmops.rag import LocalGenerator, build_prompt, retrieve_many
    from llmops.safety import evaluate_safety, load_harmful_prompts

    name = context.partition_key
    cand = evaluation.candidate(name)
    cfg = evaluation.eval_config()
    dataset = upstream_metadata(context, instruction_dataset)
    samples = load_samples(dataset["path"], "test", cfg.max_samples)
    if not samples:
        raise dg.Failure(f"evaluation: the test split of {dataset['path']} is empty")
    mlflow.activate()

    started = time.perf_counter()
    if cand.is_endpoint:
        generator: Any = evaluation.endpoint_generator(cand)
        model_version = generator.version
        kind = "endpoint"
    else:
        try:
            generator = LocalGenerator.from_registry(mlflow.registered_model, cand.ref or name)
        except LookupError as exc:
            raise dg.Failure(f"evaluation[{name}]: {exc}; materialize base_model and "
                             "finetuned_model first") from exc
        model_version = generator.version
        kind = "registered"
    context.log.info(f"candidate {name}: {kind} {model_version}, {len(samples)} test samples")

    leakage = _leakage(dataset["path"], samples, generator, assert_no_leakage, pretrain_documents)

    store = vector_store.open()
    emb = embedder.embedder

    def retrieve_fn(questions: Any) -> Any:
        return retrieve_many(store, emb, questions, k=cfg.top_k, mode=cfg.search_mode)

    judge = evaluation.judge_generator()
    rows = evaluate_candidate(generator, samples, retrieve_fn, cfg, judge=judge)
    ppl = None
    if kind == "registered":
        from llmops.training import perplexity

        ppl = round(perplexity(generator.model, generator.tokenizer, samples), 4)

    safety_summary = None
    safety_rows: list[dict[str, Any]] = []
    if evaluation.safety:
        prompts = load_harmful_prompts()
        cits = retrieve_many(store, emb, [p.prompt for p in prompts], k=cfg.top_k,
                             mode=cfg.search_mode)
        by_q = {p.prompt: c for p, c in zip(prompts, cits, strict=True)}
        verdicts, safety_summary = evaluate_safety(
            generator,
            build_prompt=lambda q: build_prompt(q, by_q[q], cfg.max_context_chars),
            prompts=prompts,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            judge=judge,
        )
        safety_rows = [
            {**v.to_dict(), "reasons": json.dumps(v.reasons)} for v in verdicts
        ]

    summary = summarize(rows, safety=safety_summary, perplexity=ppl, judged=judge is not None,
                        targets=evaluation.targets(), top_k=cfg.top_k)
    out_dir = data_root() / "evaluation" / _slug(name)
    stem = f"{_slug(str(model_version))}-{dataset['version']}"
    scores_path = write_parquet(rows, out_dir / f"{stem}.parquet")
    safety_path = write_parquet(safety_rows, out_dir / f"{stem}-safety.parquet") if safety_rows \
        else None

    run_id = _log_to_mlflow(mlflow.registered_model, name, kind, model_version, rows,
                            safety_rows, summary, cfg.to_dict(), dataset["version"],
                            context.run.run_id)
    check = _sanity(summary, leakage, evaluation)
    numeric = {k: v for k, v in summary.items()
               if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v))}
    return dg.MaterializeResult(
        metadata={
            "candidate": name,
            "kind": kind,
            "model_name": mlflow.registered_model if kind == "registered" else cand.model,
            "model_version": str(model_version),
            "dataset_version": dataset["version"],
            "scores_path": dg.MetadataValue.path(str(scores_path)),
            "safety_path": dg.MetadataValue.path(str(safety_path)) if safety_path else "",
            **numeric,
            "context_relevancy_source": summary["context_relevancy_source"],
            "targets": dg.MetadataValue.md(targets_markdown(summary)),
            "targets_json": dg.MetadataValue.json(summary["targets"]),
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
            "safety": dg.MetadataValue.json(safety_summary or {}),
            "leakage": dg.MetadataValue.json(leakage),
            "judge": judge.name if judge is not None else "none (offline metrics)",
            "metrics_backend": _backend(),
            "mlflow_run_id": run_id,
            "seconds": round(time.perf_counter() - started, 2),
        },
        check_results=[check],
    )


def _backend() -> str:
    from llmops.evaluation import Scorer

    return Scorer().backend


def _leakage(dataset_path: str, samples: list[dict[str, Any]], generator: Any,
             assert_no_leakage: Any, pretrain_documents: Any) -> dict[str, Any]:
    """{"ok": bool, ...}: evaluation documents vs the train split and the base's pre-training."""
    from datasets import load_from_disk

    dsd = load_from_disk(str(dataset_path))
    train_docs = set(dsd["train"]["doc_id"]) if "train" in dsd else set()
    eval_docs = {str(s["doc_id"]) for s in samples}
    try:
        pre = pretrain_documents(generator.paths) if getattr(generator, "paths", None) else None
        return {"ok": True, **assert_no_leakage(eval_docs, pre, train_docs)}
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}


def _sanity(summary: dict[str, Any], leakage: dict[str, Any], res: EvaluationResource
            ) -> dg.AssetCheckResult:
    problems = []
    if summary["n_scored"] < res.min_scored_samples:
        problems.append(f"only {summary['n_scored']} samples scored (< {res.min_scored_samples})")
    if summary["failure_rate"] > res.max_failure_rate:
        problems.append(f"failure rate {summary['failure_rate']:.1%} > {res.max_failure_rate:.0%}")
    if not leakage.get("ok"):
        problems.append(leakage.get("error", "leakage"))
    if summary.get("safety_failures"):
        problems.append(f"{summary['safety_failures']} safety prompts could not be answered")
    return dg.AssetCheckResult(
        check_name=SANE_CHECK,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "n_scored": summary["n_scored"],
            "failure_rate": summary["failure_rate"],
            "leakage_ok": bool(leakage.get("ok")),
            "problems": "; ".join(problems) or "none",
        },
    )


def _log_to_mlflow(model_name: str, candidate: str, kind: str, version: str,
                   rows: list[dict[str, Any]], safety_rows: list[dict[str, Any]],
                   summary: dict[str, Any], cfg: dict[str, Any], dataset_version: str,
                   dagster_run_id: str) -> str:
    """An evaluation run, child of the version's run; per-sample tables via log_table."""
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient()
    tags = {"llmops.kind": "evaluation", "candidate": candidate, "candidate_kind": kind,
            "model_version": str(version), "dataset_version": dataset_version,
            "dagster_run_id": dagster_run_id}
    if kind == "registered":
        tags["model_name"] = model_name
        parent = client.get_model_version(model_name, str(version)).run_id
        if parent:
            tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=f"eval-{candidate}-{_slug(str(version))}", tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in cfg.items()})
        mlflow.log_metrics({
            k: float(v) for k, v in summary.items()
            if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v))
        })
        mlflow.log_table(data=pd.DataFrame(rows), artifact_file="evaluation/samples.json")
        if safety_rows:
            mlflow.log_table(data=pd.DataFrame(safety_rows), artifact_file="evaluation/safety.json")
        mlflow.log_dict(summary, "evaluation/summary.json")
    if kind == "registered":
        client.set_model_version_tag(model_name, str(version), "evaluation_run_id",
                                     run.info.run_id)
    return run.info.run_id
