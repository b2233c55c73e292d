"""Run-failure sensor: every failed run is recorded, and a configured webhook is called.

The record is one JSON line per failure in ``$LLMOPS_DATA_DIR/failures.jsonl`` (what failed,
where, why), so a failure is visible without the UI; ``LLMOPS_FAILURE_WEBHOOK`` (e.g. a Slack or
Teams incoming webhook, or an alerting endpoint) receives the same JSON. A webhook that is down
is logged, never raised: alerting must not fail the sensor and lose the record.
"""

from __future__ import annotations

import json
import os
import urllib.request
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from llmops.paths import data_root

WEBHOOK_ENV = "LLMOPS_FAILURE_WEBHOOK"


def _messages(error: Any) -> str:
    """The error and its causes (Dagster wraps the user's exception), outermost first."""
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return " <- ".join(parts)[:2000]


def failure_record(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    run = context.dagster_run
    steps = [
        {"step": e.step_key, "error": _messages(e.event_specific_data.error)}
        for e in context.get_step_failure_events()
        if e.event_specific_data is not None and e.event_specific_data.error is not None
    ]
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "job": run.job_name,
        "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")},
        "message": context.failure_event.message,
        "failed_steps": steps,
    }


def post_json(url: str, payload: dict[str, Any], timeout_s: float = 5.0) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run in failures.jsonl and calls LLMOPS_FAILURE_WEBHOOK.",
)
def run_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    record = failure_record(context)
    path = data_root() / "failures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    url = os.environ.get(WEBHOOK_ENV)
    if url:
        try:
            post_json(url, record)
        except OSError as err:  # URLError, timeouts, refused connections
            context.log.warning(f"failure webhook {url} not reached: {err}")
