"""End to end on the real tiny models: evaluate -> paired A/B -> gated promotion -> rollback.

Real components: the self-built tiny Llama, two LoRA fine-tunes (one on the real answers, one
that learned to refuse), MLflow's sqlite registry, llmops.evaluation's scorer and safety set,
llmops.stats' paired statistics and the promotion policy in configs/promotion.yaml.
Retrieval is an oracle here (each sample's own reference context): this file tests the
decision loop, not the retriever (tests/test_assets_evaluation.py covers RAG retrieval).
The latency gate is set out of reach of a busy CI machine (no timing assertions in tests;
the gate itself is covered in tests/test_promotion.py); the judge panel is not required
because this loop runs below the Dagster layer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llmops import promotion, registry
from llmops.base_model import BaseModelInfo
from tests.training_data import shared_dataset, shared_tiny_base

pytestmark = pytest.mark.slow
# The paired statistics are the stats helper's module; until it is in the tree this file skips.
stats = pytest.importorskip("llmops.stats", reason="llmops.stats (paired A/B) not in the tree")
MODEL = "e2e-promotion-model"
MAX_SAMPLES = 32


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registry: v1 = tiny base (champion), v2 = good LoRA, v3 = a LoRA that learned to refuse."""
    import mlflow
    from datasets import load_from_disk

    from llmops.training import TrainConfig, train_lora

    base = tmp_path_factory.getbasetemp()
    root = tmp_path_factory.mktemp("e2e-promotion")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    registry.configure(uri, experiment="e2e-promotion")
    tiny: BaseModelInfo = shared_tiny_base(base)
    ds_path, ds_version = shared_dataset(base)

    # The degraded twin: identical inputs, every answer a refusal (a collapse fine-tunes do
    # suffer). Shuffling answers across examples is not enough: a model too small to read its
    # context scores as well on any fluent in-domain sentence.
    shuffled = root / "refusal_dataset"
    dsd = load_from_disk(str(ds_path))
    for split in ("train", "validation"):
        refusals = ["I am sorry, I cannot help with that request."] * len(dsd[split])
        dsd[split] = dsd[split].remove_columns("response").add_column("response", refusals)
    dsd.save_to_disk(str(shuffled))

    # Long enough for the tiny base to learn the answer formats with every prompt whole; the
    # MLP projections too, since attention-only LoRA on a 0.65M model learns slowly.
    cfg = TrainConfig(max_steps=120, eval_steps=40, logging_steps=10, batch_size=8,
                      learning_rate=5e-3, early_stopping_patience=0, lora_r=16,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"])
    assert registry.register_base_as_champion(tiny, MODEL, tracking_uri=uri,
                                              experiment="e2e-promotion") == "1"
    versions = {}
    for label, data, alias in (("good", ds_path, "challenger"), ("bad", shuffled, "degraded")):
        result = train_lora(cfg, tiny.path, data, output_dir=root / label)
        reg = registry.log_training_run(
            result, model_name=MODEL, base_model_dir=tiny.path, base_model_version=tiny.version,
            dataset_path=str(data), dataset_version=ds_version, tracking_uri=uri,
            experiment="e2e-promotion", alias=alias,
        )
        versions[label] = reg.version
    return {"uri": uri, "dataset": ds_path, "dataset_version": ds_version,
            "history": root / "history.jsonl", "versions": versions, "scores": {}}


def _evaluate(world: dict[str, Any], version: str) -> tuple[Any, dict[str, Any]]:
    """Per-sample scores (llmops.evaluation) and the candidate's summary, cached per version."""
    if version in world["scores"]:
        return world["scores"][version]
    import pandas as pd

    from llmops.evaluation import EvalConfig, evaluate_candidate, load_samples, summarize
    from llmops.rag import Citation, LocalGenerator, build_prompt
    from llmops.safety import evaluate_safety

    samples = load_samples(world["dataset"], "test", MAX_SAMPLES)
    contexts = iter([s["context"] for s in samples])

    def oracle(questions: list[str]) -> list[list[Citation]]:  # called in sample order
        return [[Citation("ref", "doc", "doc", None, 1.0, next(contexts))] for _ in questions]

    generator = LocalGenerator.from_registry(MODEL, version)
    cfg = EvalConfig(max_new_tokens=32, batch_size=8)
    rows = evaluate_candidate(generator, samples, oracle, cfg)
    _, safety = evaluate_safety(generator, lambda q: build_prompt(q, [], 500),
                                max_new_tokens=16, batch_size=8)
    summary = summarize(rows, safety=safety)
    table = pd.DataFrame(rows)
    meta = {**summary, "model_version": version, "dataset_version": world["dataset_version"]}
    world["scores"][version] = (table, meta)
    return table, meta


def _evidence(world: dict[str, Any], champion: str, challenger: str, ab_run_id: str
              ) -> promotion.Evidence:
    """What ab_comparison records, built from the same llmops functions."""
    policy = promotion.load_policy()
    table_a, meta_a = _evaluate(world, champion)
    table_b, meta_b = _evaluate(world, challenger)
    ok_a, ok_b = table_a[table_a["error"].isna()], table_b[table_b["error"].isna()]
    metrics = [policy.primary.metric, *[g.metric for g in policy.guards]]
    report = stats.compare_paired(ok_a, ok_b, metrics=metrics, alpha=policy.alpha,
                                  id_column="sample_id")
    paired = set(ok_a["sample_id"]) & set(ok_b["sample_id"])
    return promotion.Evidence(
        model_name=MODEL,
        champion=promotion.candidate_from_evaluation(meta_a, checks_passed=True),
        challenger=promotion.candidate_from_evaluation(meta_b, checks_passed=True),
        comparisons=[promotion.MetricComparison.from_dict(
            c.to_dict() if hasattr(c, "to_dict") else dict(vars(c))) for c in report.comparisons],
        n_paired=len(paired),
        judge=None,
        ab_run_id=ab_run_id,
        alpha=policy.alpha,
    )


def _policy() -> promotion.Policy:
    return replace(promotion.load_policy(), p95_budget_ms=1e9, judges_required=False)


def _decide_apply(world: dict[str, Any], champion: str, challenger: str, run: str
                  ) -> tuple[promotion.Decision, promotion.Outcome]:
    ev = _evidence(world, champion, challenger, run)
    return promotion.decide_and_apply(_policy(), ev, history=world["history"],
                                      experiment="e2e-promotion")


def test_better_challenger_is_promoted(world: dict[str, Any]) -> None:
    good = world["versions"]["good"]
    decision, outcome = _decide_apply(world, "1", good, "ab-good")
    assert decision.promote, decision.markdown()
    primary = next(g for g in decision.gates if g.name.startswith("primary:"))
    assert primary.value > 0  # CI lower bound of the improvement
    assert outcome.outcome == "promoted"
    assert registry.alias_snapshot(MODEL) == {
        "champion": good, "challenger": good, "previous_champion": "1"}
    print(f"\npromoted v{good}: {decision.summary()}\n{decision.markdown()}")


def test_degraded_challenger_is_rejected_with_reasons(world: dict[str, Any]) -> None:
    good, bad = world["versions"]["good"], world["versions"]["bad"]
    registry.set_alias(MODEL, "challenger", bad)
    decision, outcome = _decide_apply(world, good, bad, "ab-bad")
    assert not decision.promote and outcome.outcome == "rejected", decision.markdown()
    failed = {g.name for g in decision.failed_gates}
    # a refusal is caught by a quality gate: the primary metric or the ROUGE guard (character
    # similarity alone can favour a fixed fluent sentence over a tiny model's attempts)
    quality = {f"primary:{_policy().primary.metric}", "guard:rouge"}
    assert failed & quality, decision.markdown()
    assert registry.get_alias_version(MODEL, "champion") == good
    row = promotion.last_decision(MODEL, world["history"])
    assert row["outcome"] == "rejected" and row["reasons"]
    print(f"\nrejected v{bad}: {decision.summary()}\n{decision.markdown()}")


def test_rollback_restores_previous_champion_and_rerun_changes_nothing(
    world: dict[str, Any],
) -> None:
    good = world["versions"]["good"]
    rows_before = promotion.read_history(world["history"])
    outcome = promotion.rollback(MODEL, reason="e2e", history=world["history"],
                                 experiment="e2e-promotion")
    assert outcome.before["champion"] == good and outcome.after["champion"] == "1"
    assert registry.get_alias_version(MODEL, "previous_champion") is None

    # the same A/B evidence again: a duplicate, nothing moves, no new history row
    registry.set_alias(MODEL, "challenger", good)
    _, again = _decide_apply(world, "1", good, "ab-good")
    assert again.outcome == "duplicate"
    assert registry.get_alias_version(MODEL, "champion") == "1"
    rows = promotion.read_history(world["history"])
    assert rows[: len(rows_before)] == rows_before and len(rows) == len(rows_before) + 1
    assert rows[-1]["kind"] == "rollback"
    assert Path(world["history"]).read_text().count("\n") == len(rows)
