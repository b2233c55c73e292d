"""MLflow tracking + model registry as a ConfigurableResource.

Why not dagster-mlflow's ``mlflow_tracking``: it opens one global MLflow run per Dagster run and
keeps it in process-global state, which does not fit training that runs out of process (Pipes)
nor several assets logging separate runs in one Dagster run. This resource only carries
configuration and hands the same settings to subprocesses through environment variables; the
logging itself lives in ``llmops.registry`` so it is testable without Dagster.
"""

from __future__ import annotations

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

    def activate(self) -> None:
        """Point the in-process mlflow client at the configured stores.

        Through ``llmops.registry.configure``: a plain ``mlflow.set_experiment`` would create
        a missing experiment with its artifacts in ``./mlruns`` of the working directory.
        """
        from llmops.registry import configure

        configure(self.resolved_tracking_uri, self.resolved_registry_uri, self.experiment)

    def run_link(self, run_id: str, experiment_id: str) -> str:
        if self.ui_url:
            return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"{self.resolved_tracking_uri} run {run_id}"
