"""The k8s training launcher builds a pod that can work: image, GPU, data volume, secrets.

No cluster runs here, so the pod body dagster-k8s would submit is built with its own
``build_pod_body`` from what ``TrainerResource`` hands ``PipesK8sClient.run``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from resources.trainer import TrainerResource

K8S = dict(launcher="k8s", k8s_image="llmops:1", k8s_namespace="ml", k8s_data_claim="llmops-data",
           k8s_env_secret="llmops-secrets", k8s_service_account="trainer")


def test_k8s_pod_body_has_image_gpu_volume_env_and_secret(tmp_path: Path) -> None:
    pipes = pytest.importorskip("dagster_k8s.pipes")
    trainer = TrainerResource(**K8S, k8s_gpus=2, k8s_cpu="8", k8s_memory="32Gi")
    kwargs = trainer.launch_kwargs()
    assert kwargs["image"] == "llmops:1" and kwargs["namespace"] == "ml"
    env = trainer.launch_env({"MLFLOW_TRACKING_URI": "http://mlflow:5000",
                              "DAGSTER_PIPES_CONTEXT": "ctx", "DAGSTER_PIPES_MESSAGES": "msg"})
    pod = pipes.build_pod_body("train-1", kwargs["image"], trainer.command(), env, None,
                               kwargs["base_pod_spec"])
    (container,) = pod.spec.containers
    assert container.image == "llmops:1" and container.command[-1] == "llmops.train_entry"
    limits, requests = container.resources.limits, container.resources.requests
    assert limits == requests == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    names = {e.name: e.value for e in container.env}
    assert names["LLMOPS_DATA_DIR"] == "/data" and names["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(names)
    assert container.env_from[0].secret_ref.name == "llmops-secrets"
    assert container.volume_mounts[0].mount_path == "/data"
    (volume,) = pod.spec.volumes
    assert volume.name == container.volume_mounts[0].name
    assert volume.persistent_volume_claim.claim_name == "llmops-data"
    assert pod.spec.restart_policy == "Never" and pod.spec.service_account_name == "trainer"

    root = tmp_path / "data"
    extras = {"base_model_dir": str(root / "models/base/tiny"),
              "dataset_path": str(root / "datasets/abc"),
              "output_dir": str(root / "models/finetuned/x"),
              "elsewhere": "/opt/model", "train": {"lora_r": 8}, "dataset_version": "abc"}
    moved = trainer.launch_extras(extras, root)
    assert moved["base_model_dir"] == "/data/models/base/tiny"
    assert moved["dataset_path"] == "/data/datasets/abc"
    assert moved["output_dir"] == "/data/models/finetuned/x"
    assert moved["elsewhere"] == "/opt/model" and moved["train"] == {"lora_r": 8}
    assert TrainerResource().launch_extras(extras, root) == extras  # subprocess: unchanged


def test_k8s_launcher_refuses_what_a_pod_cannot_reach() -> None:
    assert TrainerResource().launch_kwargs() == {}
    cpu_only = TrainerResource(**{**K8S, "k8s_gpus": 0}).launch_kwargs()
    assert "nvidia.com/gpu" not in cpu_only["base_pod_spec"]["containers"][0]["resources"][
        "limits"]
    with pytest.raises(dg.Failure, match="k8s_image"):
        TrainerResource(launcher="k8s", k8s_data_claim="c").launch_kwargs()
    with pytest.raises(dg.Failure, match="k8s_data_claim"):
        TrainerResource(launcher="k8s", k8s_image="i").launch_kwargs()
    with pytest.raises(dg.Failure, match="SQLite"):
        TrainerResource(**K8S).launch_env({"MLFLOW_TRACKING_URI": "sqlite:///x/mlflow.db"})
