"""deploy/helm/values.yaml deploys the Dockerfile's image with the official Dagster chart."""

from __future__ import annotations

import yaml

from tests.conftest import REPO_ROOT


def test_helm_values_deploy_the_user_code_on_external_postgres_with_k8s_runs():
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["name"] == "llmops"
    assert {"repository", "tag", "pullPolicy"} <= set(code["image"])
    assert code["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
    assert code["port"] == 3030
    assert code["envSecrets"] and all("name" in s for s in code["envSecrets"])
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["global"]["postgresqlSecretName"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["telemetry"]["enabled"] is False
    # the module the chart serves is the real code location
    assert (REPO_ROOT / "pipelines" / "definitions.py").exists()
