"""The k8s training launcher asks for a GPU pod of the code-location image."""

from __future__ import annotations

import dagster as dg
import pytest

from resources.trainer import TrainerResource


def test_k8s_launcher_builds_a_gpu_pod_spec():
    kwargs = TrainerResource(
        launcher="k8s", k8s_image="llmops:1", k8s_namespace="ml"
    ).launch_kwargs()
    assert kwargs["image"] == "llmops:1" and kwargs["namespace"] == "ml"
    (container,) = kwargs["base_pod_spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_subprocess_launcher_needs_no_pod_and_k8s_needs_an_image():
    assert TrainerResource().launch_kwargs() == {}
    assert (
        "containers"
        not in TrainerResource(launcher="k8s", k8s_image="i", k8s_gpus=0).launch_kwargs()[
            "base_pod_spec"
        ]
    )
    with pytest.raises(dg.Failure, match="k8s_image"):
        TrainerResource(launcher="k8s").launch_kwargs()
