"""Where the embedded defaults keep their state.

One root (``LLMOPS_DATA_DIR``, default ``./.data``) so a laptop run needs no service and a test
can redirect everything to a temp dir with a single environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

# A location left unset in the YAML config falls back to these variables before the data root,
# so production moves the asset Parquet and LanceDB to object storage with the environment only.
LOCATION_ENV = {"assets": "LLMOPS_ASSETS_URI", "lancedb": "LLMOPS_LANCEDB_URI"}


def data_root() -> Path:
    """Root folder of the embedded stores (document store, Parquet outputs, LanceDB, models)."""
    return Path(os.environ.get("LLMOPS_DATA_DIR", ".data")).expanduser().resolve()


def under_data_root(value: str | None, default_subdir: str) -> str:
    """Resolve an optional configured location; URLs (s3://, gs://, ...) pass through untouched.

    Unset: ``LOCATION_ENV[default_subdir]`` from the environment if set, else the data root.
    """
    env_name = LOCATION_ENV.get(default_subdir)
    value = value or (os.environ.get(env_name) if env_name else None) or None
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


def is_local(uri: str) -> bool:
    """A plain path or ``file://`` URL (rename is atomic there; on object stores a PUT is)."""
    return "://" not in uri or uri.startswith(("file://", "local://"))


def object_store_options(uri: str) -> dict[str, str] | None:
    """LanceDB (Rust ``object_store``) options for ``uri`` from the variables boto3 reads.

    ``object_store`` takes keys and region from ``AWS_*`` itself but refuses a plain-HTTP
    endpoint (MinIO, moto, an in-cluster gateway) unless told: the endpoint from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (as boto3 and s3fs use it) is passed along
    with ``allow_http`` when it is ``http://``. ``None`` for non-S3 URIs: nothing to add.
    """
    if not uri.startswith(("s3://", "s3a://")):
        return None
    options: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            options["allow_http"] = "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["aws_region"] = region
    return options
