"""Append-only request log: one JSON object per line (JSONL), one line per answered request.

Location: ``$LLMOPS_DATA_DIR/serving/requests.jsonl`` (``ServeConfig.request_log`` overrides).
Readers (the drift sensor, the nightly evaluation, ``llmops trace``) use ``read_requests`` /
``find_request``; a torn last line (a crash mid-write) is skipped, never fatal.

Schema (``SCHEMA_VERSION`` 1), every field always present:

=================  ==========================================================================
request_id         "req-<32 hex>" (also the response's ``id`` and ``X-Request-Id`` header)
time               ISO-8601 UTC time the request arrived
key_id             who asked: the API key id or the JWT ``sub`` (never the key itself)
role               reader | admin
model              registered model name
model_version      MLflow model version that answered (str)
alias              the alias served (champion)
lancedb_table      LanceDB table name
lancedb_version    LanceDB table version the citations came from (int)
prompt             the question (last user message)
answer             the generated text ("" for retrieval-only, max_tokens=0)
citations          [{chunk_id, doc_id, doc_name, page, score}]
latency_s          wall time from arrival to the last byte (float, seconds)
retrieval_s        retrieval part of it
tokens_in          prompt tokens (model tokenizer)
tokens_out         generated tokens
cost               tokens_in/1000*price_in + tokens_out/1000*price_out (configured prices)
stream             true when answered as SSE
status             "ok" | "error"
error              null or the reason
schema             SCHEMA_VERSION
=================  ==========================================================================
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
FIELDS = (
    "request_id", "time", "key_id", "role", "model", "model_version", "alias", "lancedb_table",
    "lancedb_version", "prompt", "answer", "citations", "latency_s", "retrieval_s", "tokens_in",
    "tokens_out", "cost", "stream", "status", "error", "schema",
)


class RequestLog:
    """Appends records with one ``write`` per line under a lock (O_APPEND: other processes too)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        missing = [f for f in FIELDS if f not in record and f != "schema"]
        if missing:
            raise ValueError(f"request log record lacks {missing}")
        line = json.dumps({**record, "schema": SCHEMA_VERSION}, ensure_ascii=False, default=str)
        data = (line + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


def read_requests(path: str | Path, since: str | None = None) -> Iterator[dict[str, Any]]:
    """Records in write order; ``since`` (ISO time) keeps those at or after it."""
    file = Path(path)
    if not file.is_file():
        return
    with file.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a crash mid-write
            if since is None or str(rec.get("time", "")) >= since:
                yield rec


def find_request(path: str | Path, request_id: str) -> dict[str, Any] | None:
    for rec in read_requests(path):
        if rec.get("request_id") == request_id:
            return rec
    return None
