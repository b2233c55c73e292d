"""Schedules request the right runs; the run-failure sensor records failures and calls a webhook."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg

from pipelines.schedules import nightly_champion_evaluation, periodic_retrain
from sensors.failures import run_failure_sensor


def test_nightly_evaluation_requests_the_champion_partition_once_a_day() -> None:
    when = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        request = nightly_champion_evaluation(context)
    assert request.partition_key == "champion"
    assert request.run_key == "nightly-champion-2026-11-25"  # one run per night, even re-ticked
    assert request.tags["llmops/trigger"] == "schedule"
    assert nightly_champion_evaluation.job_name == "evaluate"
    assert periodic_retrain.job_name == "training"
    assert periodic_retrain.default_status == dg.DefaultScheduleStatus.STOPPED


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()


@dg.op
def explode() -> None:
    raise ValueError("the corpus is on fire")


@dg.job(tags={"llmops/trigger": "test"})
def doomed() -> None:
    explode()


def _failure_context(instance: dg.DagsterInstance) -> dg.RunFailureSensorContext:
    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name=run_failure_sensor.name, dagster_instance=instance, dagster_run=run,
        dagster_event=failure,
    ).for_run_failure()


def test_failed_run_is_recorded_and_the_webhook_is_called(tmp_path, monkeypatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMOPS_FAILURE_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        with dg.instance_for_test() as instance:
            context = _failure_context(instance)
            run_failure_sensor(context)
    finally:
        server.shutdown()
    (line,) = (tmp_path / "failures.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["job"] == "doomed" and record["run_id"] == context.dagster_run.run_id
    assert record["tags"]["llmops/trigger"] == "test"
    assert record["failed_steps"][0]["step"] == "explode"
    assert "the corpus is on fire" in record["failed_steps"][0]["error"]
    assert _Hook.received == [record]


def test_an_unreachable_webhook_does_not_lose_the_record(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMOPS_FAILURE_WEBHOOK", "http://127.0.0.1:9/nobody-listens")
    with dg.instance_for_test() as instance:
        run_failure_sensor(_failure_context(instance))
    assert len((tmp_path / "failures.jsonl").read_text().splitlines()) == 1
