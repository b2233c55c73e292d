"""Schedules: the champion re-evaluated every night on the current data; an optional retrain.

The nightly evaluation feeds the drift sensor's score-decay test and the A/B comparison (the
champion's partition is always fresh); the periodic retrain is off by default because drift,
not the calendar, should decide when to spend a training run.
"""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import evaluation_job, training_job


@dg.schedule(
    job=evaluation_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-evaluate the champion on the current test split and knowledge base.",
)
def nightly_champion_evaluation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(
        run_key=f"nightly-champion-{day}",
        partition_key="champion",
        tags={"llmops/trigger": "schedule", "llmops/schedule": "nightly_champion_evaluation"},
    )


periodic_retrain = dg.ScheduleDefinition(
    name="periodic_retrain",
    job=training_job,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"llmops/trigger": "schedule", "llmops/schedule": "periodic_retrain"},
    description="Weekly retraining regardless of drift (off by default; the drift sensor "
    "retrains when the data moved).",
)
