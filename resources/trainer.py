"""Base model and LoRA settings, and the Dagster Pipes client that runs training out of process."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class TrainerResource(dg.ConfigurableResource):
    launcher: str = "subprocess"  # subprocess | k8s
    python: str | None = None  # interpreter for the subprocess; default: this one
    k8s_image: str | None = None
    k8s_namespace: str = "default"
    k8s_gpus: int = 1  # nvidia.com/gpu request and limit of the training pod (0: CPU pod)
    k8s_cpu: str = "4"
    k8s_memory: str = "16Gi"
    # A pod cannot see this machine's data root: a PersistentVolumeClaim holding it (the same
    # volume the code location mounts) is mounted at k8s_data_mount and LLMOPS_DATA_DIR points
    # there; base model, dataset and output paths are rewritten to that mount.
    k8s_data_claim: str | None = None
    k8s_data_mount: str = "/data"
    k8s_env_secret: str | None = None  # Secret with MLflow/S3 credentials, injected by envFrom
    k8s_service_account: str | None = None
    base_model: str = "tiny"  # tiny | local folder | hub id
    tiny_vocab_size: int = 2048
    tiny_pretrain_steps: int = 300
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None
    learning_rate: float = 3e-3
    max_steps: int = 150
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512  # tokens per example (instruction + context + response)
    packing: str = "auto"  # auto | padding-free | padded (llmops.training.TrainConfig)
    eval_steps: int = 25
    early_stopping_patience: int = 3
    seed: int = 13
    merge_adapter: bool = False

    def train_params(self) -> dict[str, Any]:
        """The part of this config the training entry point reads (llmops.training.TrainConfig)."""
        return {
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": self.target_modules,
            "learning_rate": self.learning_rate,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_length": self.max_length,
            "packing": self.packing,
            "eval_steps": self.eval_steps,
            "early_stopping_patience": self.early_stopping_patience,
            "seed": self.seed,
            "merge_adapter": self.merge_adapter,
        }

    def pipes_client(self, env: dict[str, str]) -> dg.PipesSubprocessClient:
        if self.launcher == "subprocess":
            return dg.PipesSubprocessClient(env={**os.environ, **env}, cwd=str(PROJECT_ROOT))
        if self.launcher == "k8s":
            try:
                from dagster_k8s import PipesK8sClient  # type: ignore[import-not-found]
            except ImportError as exc:
                raise dg.Failure(
                    "trainer.launcher=k8s needs the dagster-k8s package: pip install dagster-k8s"
                ) from exc
            return PipesK8sClient(env=env)  # type: ignore[return-value]
        raise dg.Failure(f"trainer.launcher: unknown launcher {self.launcher!r} (subprocess|k8s)")

    def launch_kwargs(self) -> dict[str, Any]:
        """Extra `client.run` arguments of the launcher; nothing for a subprocess. For k8s: the
        image, namespace and a pod spec whose training container requests CPU, memory and
        `nvidia.com/gpu`, mounts the data volume and takes its credentials from a Secret."""
        if self.launcher != "k8s":
            return {}
        if not self.k8s_image:
            raise dg.Failure(
                "trainer.launcher=k8s needs trainer.k8s_image (the Dockerfile's image)"
            )
        if not self.k8s_data_claim:
            raise dg.Failure(
                "trainer.launcher=k8s needs trainer.k8s_data_claim: a PersistentVolumeClaim "
                "holding the data root (LLMOPS_DATA_DIR), since a pod cannot see local folders"
            )
        amounts = {"cpu": self.k8s_cpu, "memory": self.k8s_memory}
        if self.k8s_gpus > 0:
            amounts["nvidia.com/gpu"] = str(self.k8s_gpus)
        container: dict[str, Any] = {
            "resources": {"requests": amounts, "limits": amounts},
            "env": [{"name": "LLMOPS_DATA_DIR", "value": self.k8s_data_mount}],
            "volumeMounts": [{"name": "llmops-data", "mountPath": self.k8s_data_mount}],
        }
        if self.k8s_env_secret:
            container["envFrom"] = [{"secretRef": {"name": self.k8s_env_secret}}]
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "llmops-data",
                         "persistentVolumeClaim": {"claimName": self.k8s_data_claim}}],
        }
        if self.k8s_service_account:
            spec["serviceAccountName"] = self.k8s_service_account
        return {"image": self.k8s_image, "namespace": self.k8s_namespace, "base_pod_spec": spec}

    def launch_extras(self, extras: dict[str, Any], data_root: Path) -> dict[str, Any]:
        """The extras as the training process will see them: for k8s, paths under the local
        data root become paths under the pod's mount of the same volume."""
        if self.launcher != "k8s":
            return extras
        root = data_root.resolve()

        def in_pod(value: Any) -> Any:
            if not isinstance(value, str) or not value.startswith("/"):
                return value
            path = Path(value).resolve()
            if not path.is_relative_to(root):
                return value
            return str(Path(self.k8s_data_mount) / path.relative_to(root))

        return {key: in_pod(value) for key, value in extras.items()}

    def launch_env(self, env: dict[str, str]) -> dict[str, str]:
        """Environment for the training process; a pod cannot reach a local SQLite store."""
        uri = env.get("MLFLOW_TRACKING_URI", "")
        if self.launcher == "k8s" and uri.startswith("sqlite:"):
            raise dg.Failure(
                f"trainer.launcher=k8s: the MLflow tracking URI {uri!r} is a local SQLite file "
                "the pod cannot reach; set mlflow.tracking_uri to a tracking server"
            )
        return env

    def command(self) -> list[str]:
        return [self.python or sys.executable, "-m", "llmops.train_entry"]
