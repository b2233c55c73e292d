"""Declarative automation: a new challenger is evaluated, compared and (maybe) promoted.

A training run (drift sensor, schedule, UI) materializes dataset -> base -> challenger; the
evaluation, A/B and promotion assets are eager, so the automation sensor chains the rest. The
ticks are evaluated with Dagster's own tester on a real instance.
"""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs


def _materialized(instance: dg.DagsterInstance, *keys: str, partition: str | None = None) -> None:
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=key, partition=partition)
        )


def _requested(result) -> set[tuple[str, str | None]]:
    return {(name, partition)
            for name in ("evaluation", "ab_comparison", "promotion")
            for partition in result.get_requested_partitions(dg.AssetKey(name))}


def test_training_is_followed_by_evaluation_ab_and_promotion_once() -> None:
    chain = dg.AssetSelection.assets("evaluation", "ab_comparison", "promotion")
    upstream = ("chunk_embeddings", "instruction_dataset", "base_model", "finetuned_model")
    with dg.instance_for_test() as instance:
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain)
        assert tick.total_requested == 0  # nothing trained yet: nothing to evaluate
        _materialized(instance, *upstream)
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain,
                                                 cursor=tick.cursor)
        assert _requested(tick) == {("evaluation", "champion"), ("evaluation", "challenger")}

        # only one candidate done: the comparison waits for the other
        _materialized(instance, "evaluation", partition="champion")
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain,
                                                 cursor=tick.cursor)
        assert not {k for k, _ in _requested(tick)} & {"ab_comparison", "promotion"}

        _materialized(instance, "evaluation", partition="challenger")
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain,
                                                 cursor=tick.cursor)
        # the comparison and, after it in the same run, the promotion
        assert _requested(tick) == {("ab_comparison", None), ("promotion", None)}

        _materialized(instance, "ab_comparison", "promotion")
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain,
                                                 cursor=tick.cursor)
        assert tick.total_requested == 0  # nothing new: nothing requested

        _materialized(instance, "finetuned_model")  # the next retraining starts it again
        tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=chain,
                                                 cursor=tick.cursor)
        assert _requested(tick) == {("evaluation", "champion"), ("evaluation", "challenger")}
