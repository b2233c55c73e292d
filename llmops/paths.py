"""Where the embedded defaults keep their state.

One root (``LLMOPS_DATA_DIR``, default ``./.data``) so a laptop run needs no service and a test
can redirect everything to a temp dir with a single environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Root folder of the embedded stores (document store, Parquet outputs, LanceDB, models)."""
    return Path(os.environ.get("LLMOPS_DATA_DIR", ".data")).expanduser().resolve()


def under_data_root(value: str | None, default_subdir: str) -> str:
    """Resolve an optional configured location; URLs (s3://, gs://, ...) pass through untouched."""
    if value and "://" in value:
        return value
    if value:
        return str(Path(value).expanduser().resolve())
    return str(data_root() / default_subdir)


def default_mlflow_uri() -> str:
    """MLflow tracking/registry store: ``MLFLOW_TRACKING_URI`` or a local SQLite file."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    path = Path(".mlruns").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"
