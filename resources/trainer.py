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
    k8s_gpus: int = 1  # nvidia.com/gpu limit of the training pod (0: CPU pod)
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
        """Extra `client.run` arguments of the launcher: for k8s the image, namespace and a pod
        spec whose training container requests `nvidia.com/gpu`; nothing for a subprocess."""
        if self.launcher != "k8s":
            return {}
        if not self.k8s_image:
            raise dg.Failure(
                "trainer.launcher=k8s needs trainer.k8s_image (the Dockerfile's image)"
            )
        spec: dict[str, Any] = {"restartPolicy": "Never"}
        if self.k8s_gpus > 0:
            gpus = str(self.k8s_gpus)
            spec["containers"] = [
                {
                    "resources": {
                        "limits": {"nvidia.com/gpu": gpus},
                        "requests": {"nvidia.com/gpu": gpus},
                    }
                }
            ]
        return {"image": self.k8s_image, "namespace": self.k8s_namespace, "base_pod_spec": spec}

    def command(self) -> list[str]:
        return [self.python or sys.executable, "-m", "llmops.train_entry"]
