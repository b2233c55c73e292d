"""The deployment record: registry champion, what the endpoint serves, LanceDB version, time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops.paths import data_root


def deployments_path() -> Path:
    return data_root() / "serving" / "deployments.jsonl"


def probe(endpoint: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The endpoint's /healthz, or ``{"error": ...}`` when it does not answer."""
    import httpx

    try:
        r = httpx.get(endpoint.rstrip("/") + "/healthz", timeout=timeout_s)
        r.raise_for_status()
        return r.json()
    except (httpx.HTTPError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}"}


def record_deployment(model_name: str, alias: str, endpoint: str, store: Any,
                      path: Path | None = None) -> dict[str, Any]:
    """Append one record to ``deployments.jsonl`` and return it (mlflow must be configured)."""
    from llmops.registry import resolve_version

    version = resolve_version(model_name, alias)
    health = probe(endpoint)
    served = health.get("model_version")
    rec = {
        "time": datetime.now(UTC).isoformat(), "endpoint": endpoint, "model": model_name,
        "alias": alias, "model_version": version, "served_version": served,
        "in_sync": served == version, "lancedb_table": getattr(store, "table_name", None),
        "lancedb_version": int(store.version), "probe_error": health.get("error"),
    }
    out = path or deployments_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    return rec
