"""MLflow tracking + model registry as a ConfigurableResource.

Why not dagster-mlflow's ``mlflow_tracking``: it opens one global MLflow run per Dagster run and
keeps it in process-global state, which does not fit training that runs out of process (Pipes)
nor several assets logging separate runs in one Dagster run. This resource only carries
configuration and hands the same settings to subprocesses through environment variables; the
logging itself lives in ``llmops.registry`` so it is testable without Dagster.
"""

from __future__ import annotations

import os

import dagster as dg

from llmops.paths import default_mlflow_uri


class MLflowResource(dg.ConfigurableResource):
    tracking_uri: str | None = None  # default: MLFLOW_TRACKING_URI or sqlite:///.mlruns/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI
    experiment: str = "llmops"
    registered_model: str = "llmops-assistant"
    ui_url: str | None = None  # e.g. http://localhost:5000, for links in asset metadata

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or default_mlflow_uri()

    @property
    def resolved_registry_uri(self) -> str:
        return self.registry_uri or self.resolved_tracking_uri

    def env(self) -> dict[str, str]:
        """Settings for a training subprocess or remote pod."""
        return {
            "MLFLOW_TRACKING_URI": self.resolved_tracking_uri,
            "MLFLOW_REGISTRY_URI": self.resolved_registry_uri,
            "MLFLOW_EXPERIMENT_NAME": self.experiment,
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    @property
    def resolved_ui_url(self) -> str:
        """Where the MLflow UI is: ``ui_url``, else MLFLOW_UI_URL, else the tracking server
        itself, else `mlflow ui`'s default address (README: `make mlflow`)."""
        uri = self.resolved_tracking_uri
        return (self.ui_url or os.environ.get("MLFLOW_UI_URL")
                or (uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"))

    def activate(self) -> str:
        """Point the in-process mlflow client at the configured stores; returns the experiment
        id. Goes through ``registry.configure`` so a new experiment keeps its artifacts at the
        configured location, never in ./mlruns of the working directory."""
        from llmops.registry import configure

        return configure(self.resolved_tracking_uri, self.resolved_registry_uri, self.experiment)

    def run_url(self, run_id: str, experiment_id: str) -> str:
        return f"{self.resolved_ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
