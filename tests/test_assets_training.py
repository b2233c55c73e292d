"""base_model and finetuned_model as Dagster assets: Pipes subprocess, MLflow registry."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from tests.training_data import corpus_texts, report_dataset, shared_dataset, shared_tiny_base

pytestmark = pytest.mark.slow


@pytest.fixture()
def resources(tmp_path, tmp_path_factory):
    from llmops.vectorstore import VectorStore
    from resources.knowledge import VectorStoreResource
    from resources.mlflow import MLflowResource
    from resources.trainer import TrainerResource

    texts = corpus_texts()
    rng = np.random.default_rng(0)
    store = VectorStore(str(tmp_path / "lancedb"), dim=8)
    store.upsert(
        [
            {"chunk_id": f"c{i}", "doc_id": f"d{i % 5}", "text": t, "vector": rng.random(8)}
            for i, t in enumerate(texts)
        ]
    )
    return {
        "vector_store": VectorStoreResource(uri=str(tmp_path / "lancedb")),
        "mlflow": MLflowResource(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", registered_model="assets-test"
        ),
        # The session's tiny model, as a local folder: the path users take with their own model.
        "trainer": TrainerResource(
            base_model=shared_tiny_base(tmp_path_factory.getbasetemp()).path,
            max_steps=40,
            eval_steps=10,
            max_length=256,
            batch_size=8,
        ),
    }


def test_finetuned_model_trains_through_pipes_and_registers_a_challenger(
    resources, tmp_path, tmp_path_factory, monkeypatch
):
    from assets.training import base_model, finetuned_beats_base, finetuned_model
    from llmops.registry import list_models

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    dataset_path, version = shared_dataset(tmp_path_factory.getbasetemp())
    with dg.instance_for_test() as instance:
        # The dataset asset is covered by its own tests; here it only has to exist upstream.
        report_dataset(instance, {"path": str(dataset_path), "version": version})
        result = dg.materialize(
            [base_model, finetuned_model, finetuned_beats_base], instance=instance,
            resources=resources,
        )
        assert result.success
        base_meta = result.asset_materializations_for_node("base_model")[0].metadata
        assert base_meta["registered_champion"].value not in (None, "existing champion kept")
        mats = result.asset_materializations_for_node("finetuned_model")
        assert len(mats) == 1
        meta = {k: v.value for k, v in mats[0].metadata.items()}
    # Metadata streamed back from the training subprocess over Pipes.
    assert meta["test_perplexity"] < meta["test_perplexity_base"]
    resources["mlflow"].activate()
    versions = list_models("assets-test")
    aliases = {a for v in versions for a in v["aliases"]}
    assert {"champion", "challenger"} <= aliases
    # The MLflow run was opened by the training process, holds the live per-step metrics at
    # their real times, and is linked both ways with the Dagster asset and run.
    import mlflow

    run = mlflow.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_asset_key"] == "finetuned_model"
    assert run.data.tags["dagster_run_id"] == result.run_id
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history][:2] == [1, 5] and len(history) >= 8
    stamps = [m.timestamp for m in history]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # logged as training went
    assert meta["mlflow_run_url"].endswith(f"/runs/{meta['mlflow_run_id']}")
    assert meta["loss_curve"].startswith("![loss curve](data:image/png;base64,")
    tracking_dir = tmp_path
    assert not (tracking_dir / "mlruns").exists()
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("finetuned_beats_base", True)]
    version = mlflow.MlflowClient().get_model_version("assets-test", meta["model_version"])
    assert version.tags["llmops.check.beats_base"] == "true"


def test_training_uses_the_newest_dataset_version_whose_checks_passed():
    from assets.dataset import DATASET_CHECKS, instruction_dataset
    from assets.training import checked_metadata

    seen: list[dict] = []

    @dg.asset(deps=[instruction_dataset])
    def probe(context):
        seen.append(checked_metadata(context, instruction_dataset, DATASET_CHECKS))
        return dg.MaterializeResult()

    def report(instance, version: str, passed: bool) -> None:
        report_dataset(instance, {"version": version}, passed=passed)

    def run(instance, **kw):
        return dg.materialize([probe], instance=instance, **kw)

    with dg.instance_for_test() as instance:
        report(instance, "good-1", passed=True)
        report(instance, "leaky-2", passed=False)
        assert run(instance).success
        assert seen[-1]["version"] == "good-1"  # the newer version leaked: not used
        report(instance, "good-3", passed=True)
        assert run(instance).success
        assert seen[-1]["version"] == "good-3"

    with dg.instance_for_test() as instance:
        report(instance, "leaky-1", passed=False)
        result = run(instance, raise_on_error=False)
        assert not result.success and "passed all of its checks" in str(
            result.failure_data_for_node("probe").error.message)


def test_one_mlflow_run_per_dataset_version(tmp_path):
    from types import SimpleNamespace

    from datasets import Dataset, DatasetDict

    from assets.dataset import dataset_run
    from resources.mlflow import MLflowResource

    experiment_id = MLflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").activate()
    from llmops.dataset import COLUMNS

    rows = [{column: "x" for column in COLUMNS}]
    build = SimpleNamespace(version="v-1", dataset_dict=DatasetDict(
        {"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows)}))
    first = dataset_run(build, "dagster-run-1", "instruction_dataset")
    assert dataset_run(build, "dagster-run-2", "instruction_dataset") == first  # same version
    other = dataset_run(SimpleNamespace(version="v-2", dataset_dict=build.dataset_dict),
                        "dagster-run-3", "instruction_dataset")
    assert other != first
    import mlflow

    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "artifacts").as_uri()  # never ./mlruns of the cwd


def test_evaluation_runs_on_the_training_device(monkeypatch):
    import torch

    from llmops.training import inference_device

    assert inference_device() == ("cpu", torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert inference_device() == ("cuda", torch.bfloat16)
