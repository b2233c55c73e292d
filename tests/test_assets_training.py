"""base_model and finetuned_model as Dagster assets: Pipes subprocess, MLflow registry."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from tests.training_data import corpus_texts, shared_dataset, shared_tiny_base

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
    from assets.dataset import instruction_dataset
    from assets.training import base_model, finetuned_model
    from llmops.registry import list_models

    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    dataset_path, version = shared_dataset(tmp_path_factory.getbasetemp())
    with dg.instance_for_test() as instance:
        # The dataset asset is covered by its own tests; here it only has to exist upstream.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=instruction_dataset.key,
                metadata={"path": str(dataset_path), "version": version},
            )
        )
        result = dg.materialize(
            [base_model, finetuned_model], instance=instance, resources=resources
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
