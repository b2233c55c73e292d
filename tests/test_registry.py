"""MLflow tracking + registry: the training run, the base champion, the challenger, Pipes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from llmops.base_model import BaseModelInfo
from llmops.training import TrainConfig, TrainResult, perplexity, train_lora
from tests.training_data import REPO_ROOT, shared_dataset, shared_tiny_base

MODEL = "llmops-test-assistant"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> BaseModelInfo:
    return shared_tiny_base(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return shared_dataset(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained(tiny: BaseModelInfo, dataset: tuple[Path, str],
            tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    cfg = TrainConfig(max_steps=30, eval_steps=10, logging_steps=2, batch_size=8)
    return train_lora(cfg, tiny.path, dataset[0], output_dir=tmp_path_factory.mktemp("reg"))


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def test_training_run_is_tracked_and_registered_as_challenger(
    mlflow_store: str, tiny: BaseModelInfo, dataset: tuple[Path, str], trained: TrainResult,
    tmp_path: Path,
) -> None:
    import mlflow

    from llmops import registry

    champion = registry.register_base_as_champion(tiny, MODEL, dagster_run_id="run-base")
    assert champion == "1"
    assert registry.register_base_as_champion(tiny, MODEL) is None  # champion kept

    ds_path, ds_version = dataset
    reg = registry.log_training_run(
        trained, model_name=MODEL, base_model_dir=tiny.path, base_model_version=tiny.version,
        dataset_path=str(ds_path), dataset_version=ds_version,
        metrics={"test_perplexity": 12.5}, dagster_run_id="run-ft",
    )
    assert reg.version == "2"
    client = mlflow.MlflowClient()
    run = client.get_run(reg.run_id)
    assert run.data.params["lora_r"] == "8"
    assert run.data.params["target_modules"] == "q_proj,k_proj,v_proj,o_proj"
    assert run.data.tags["dataset_version"] == ds_version
    assert run.data.tags["base_model_version"] == tiny.version
    assert run.data.tags["dagster_run_id"] == "run-ft"
    assert len(run.data.tags["git_commit"]) == 40
    assert run.data.metrics["test_perplexity"] == 12.5

    loss = client.get_metric_history(reg.run_id, "loss")
    assert [m.step for m in loss][:3] == [1, 2, 4] and len(loss) >= 10
    assert len(client.get_metric_history(reg.run_id, "learning_rate")) == len(loss)
    assert [m.step for m in client.get_metric_history(reg.run_id, "eval_loss")][:2] == [0, 10]

    inputs = run.inputs.dataset_inputs
    assert {i.dataset.digest for i in inputs} == {ds_version}
    assert {i.dataset.name for i in inputs} >= {"instruction_dataset-train"}

    top = {a.path for a in client.list_artifacts(reg.run_id)}
    assert {"adapter", "loss_curve.png", "train_config.json", "log_history.json"} <= top
    assert "adapter/adapter_config.json" in {
        a.path for a in client.list_artifacts(reg.run_id, "adapter")}

    mv = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(mv.version) == "2" and mv.run_id == reg.run_id
    assert mv.tags["dataset_version"] == ds_version
    assert float(mv.tags["metric.test_perplexity"]) == 12.5
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    rows = registry.list_models(MODEL)
    assert [(r["version"], r["aliases"]) for r in rows] == [
        ("1", ["champion"]), ("2", ["challenger"])]
    assert rows[1]["metrics"]["test_perplexity"] == 12.5
    assert rows[0]["tags"]["llmops.kind"] == "base"
    assert registry.list_models("no-such-model") == []

    # The registered version is self-contained: same perplexity as the local adapter.
    from datasets import load_from_disk

    test = load_from_disk(str(ds_path))["test"]
    model, tok = registry.load_model_version(MODEL, "challenger")
    assert perplexity(model, tok, test) == pytest.approx(
        perplexity(trained.adapter_dir, data=test), rel=1e-5)
    base_model, base_tok = registry.load_model_version(MODEL, "champion")
    assert perplexity(base_model, base_tok, test) == pytest.approx(
        perplexity(tiny.path, data=test), rel=1e-5)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@challenger")
    answers = pyfunc.predict(["### Instruction:\nSay something.\n\n### Response:\n"],
                             params={"max_new_tokens": 5})
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_entry_point_through_dagster_pipes(
    mlflow_store: str, tiny: BaseModelInfo, dataset: tuple[Path, str], tmp_path: Path
) -> None:
    """The asset-side contract: extras in, streamed logs + one materialization out."""
    import mlflow

    ds_path, ds_version = dataset
    extras: dict[str, Any] = {
        "train": {"max_steps": 20, "eval_steps": 10, "batch_size": 8, "max_length": 256},
        "base_model_dir": tiny.path,
        "base_model_version": tiny.version,
        "dataset_path": str(ds_path),
        "dataset_version": ds_version,
        "output_dir": str(tmp_path / "ft"),
        "registered_model": MODEL,
    }

    @dg.asset
    def finetuned(context, pipes: dg.PipesSubprocessClient):  # string hints: dagster needs real
        extras["dagster_run_id"] = context.run.run_id
        return pipes.run(
            command=[sys.executable, "-m", "llmops.train_entry"], context=context, extras=extras
        ).get_materialize_result()

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_TRACKING_URI": mlflow_store,
           "MLFLOW_EXPERIMENT_NAME": "pipes-test"}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [finetuned], instance=instance,
            resources={"pipes": dg.PipesSubprocessClient(env=env, cwd=str(REPO_ROOT))},
        )
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    mat = result.asset_materializations_for_node("finetuned")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["global_step"] == 20
    assert meta["test_perplexity"] < meta["test_perplexity_base"]
    assert meta["model_version"] == "1" and meta["registered_model"] == MODEL
    assert Path(meta["adapter_dir"]).is_dir()
    assert "| fine-tuned |" in meta["summary"]
    # Training progress reached Dagster's log while the subprocess ran (Pipes log channel).
    assert any(m.startswith("step 10: eval_loss=") for m in messages), messages[-20:]
    assert any("registered " + MODEL in m for m in messages)
    mv = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "challenger")
    assert mv.tags["dagster_run_id"] == result.run_id
