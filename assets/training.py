"""Fine-tuning: a base model and a LoRA challenger trained out of process, tracked in MLflow."""

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from assets.dataset import DATASET_CHECKS, instruction_dataset
from assets.structuring import chunk_embeddings
from llmops.lineage import code_version, resource_settings
from llmops.paths import data_root
from resources.knowledge import VectorStoreResource
from resources.mlflow import MLflowResource
from resources.trainer import TrainerResource


def upstream_metadata(context: dg.AssetExecutionContext, asset: dg.AssetsDefinition) -> dict:
    """Metadata of an upstream asset's latest materialization (paths, versions)."""
    event = context.instance.get_latest_materialization_event(asset.key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{asset.key.to_user_string()} has never been materialized")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def checked_metadata(
    context: dg.AssetExecutionContext, asset: dg.AssetsDefinition, checks: Iterable[str]
) -> dict:
    """Metadata of the newest materialization of ``asset`` that passed every check in
    ``checks``.

    The latest materialization is not enough: a dataset version that failed a blocking check
    (a leak, empty fields) stays the latest until the next build, and a later training run
    must not pick it up.
    """
    check_keys = [dg.AssetCheckKey(asset.key, name) for name in checks]
    storage = context.instance.event_log_storage
    verdicts: dict[int, list[bool]] = {}
    for key in check_keys:
        for record in storage.get_asset_check_execution_history(key, limit=50):
            # a check still running (another run's) is only planned: no verdict, no target yet
            evaluation = record.evaluation
            target = getattr(evaluation, "target_materialization_data", None)
            if target is None or not hasattr(evaluation, "passed"):
                continue
            verdicts.setdefault(target.storage_id, []).append(evaluation.passed)
    records = context.instance.fetch_materializations(asset.key, limit=50).records
    for record in records:
        seen = verdicts.get(record.storage_id, [])
        if len(seen) >= len(check_keys) and all(seen):
            return {k: v.value for k, v in record.asset_materialization.metadata.items()}
    raise dg.Failure(
        f"{asset.key.to_user_string()}: none of its last {len(records)} materializations passed "
        f"all of its checks {[k.name for k in check_keys]}; fix the data and materialize it again"
    )


def _held_out_documents(context: dg.AssetExecutionContext) -> set[str]:
    """Document ids of the instruction dataset's validation and test splits."""
    from datasets import load_from_disk

    dataset = checked_metadata(context, instruction_dataset, DATASET_CHECKS)
    dsd = load_from_disk(str(dataset["path"]))
    return {d for split in ("validation", "test") if split in dsd for d in dsd[split]["doc_id"]}


@dg.asset(
    deps=[chunk_embeddings, instruction_dataset],
    group_name="fine_tuning",
    kinds={"transformers", "mlflow"},
    pool="training",
    code_version=code_version(
        "llmops.base_model", "llmops.registry", settings=resource_settings("trainer"), base="2"
    ),
)
def base_model(
    context: dg.AssetExecutionContext,
    trainer: TrainerResource,
    vector_store: VectorStoreResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """The model to fine-tune: a hub id, a local folder, or a tiny model built on the corpus.

    No leakage: the tiny model is pre-trained on the corpus minus the documents of the
    instruction dataset's validation and test splits. Pre-trained on every chunk, it memorises
    the evaluation documents and any A/B "win" is partly recall of text it has seen. The ids of
    the documents it did see go to ``pretrain_documents.json`` inside the model folder, so they
    travel with every registered version built on it and ``evaluation`` can assert that the
    documents it scores are not among them.
    """
    from llmops.base_model import PRETRAIN_DOCUMENTS, BaseModelConfig, resolve_base_model
    from llmops.registry import register_base_as_champion

    held_out = _held_out_documents(context)
    table = vector_store.open().rows(columns=["doc_id", "text"])
    rows = [r for r in table.to_pylist() if r["doc_id"] not in held_out]
    texts = [r["text"] for r in rows]
    cfg = BaseModelConfig(
        source=trainer.base_model,
        vocab_size=trainer.tiny_vocab_size,
        pretrain_steps=trainer.tiny_pretrain_steps,
        seed=trainer.seed,
    )
    info = resolve_base_model(cfg, texts=texts, out_root=str(data_root() / "models" / "base"))
    if cfg.source == "tiny":
        seen = sorted({r["doc_id"] for r in rows})
        (Path(info.path) / PRETRAIN_DOCUMENTS).write_text(
            json.dumps({"doc_ids": seen, "held_out": sorted(held_out)}, indent=1)
        )
    champion = register_base_as_champion(
        info,
        model_name=mlflow.registered_model,
        dagster_run_id=context.run.run_id,
        tracking_uri=mlflow.resolved_tracking_uri,
        registry_uri=mlflow.resolved_registry_uri,
        experiment=mlflow.experiment,
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(info.path),
            "source": trainer.base_model,
            "architecture": info.arch,
            "parameters": info.n_params,
            "vocab_size": info.vocab_size,
            "version": info.version,
            "pretrain_loss_start": info.pretrain_loss_start,
            "pretrain_loss_end": info.pretrain_loss_end,
            "registered_champion": champion or "existing champion kept",
            "held_out_documents": len(held_out),
            "pretrain_texts": len(texts),
        },
        data_version=dg.DataVersion(info.version),
    )


@dg.asset(
    deps=[instruction_dataset, base_model],
    group_name="fine_tuning",
    kinds={"peft", "mlflow"},
    pool="training",
    code_version=code_version(
        "llmops.training", "llmops.train_entry", settings=resource_settings("trainer")
    ),
)
def finetuned_model(
    context: dg.AssetExecutionContext,
    trainer: TrainerResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """LoRA fine-tune, run out of process through Dagster Pipes; registered as `challenger`.

    Trains on the newest dataset version whose checks passed; the MLflow run is opened when
    training starts and linked both ways (run tags name this asset and Dagster run; the
    materialization links to the run and shows the loss curve)."""
    dataset = checked_metadata(context, instruction_dataset, DATASET_CHECKS)
    base = upstream_metadata(context, base_model)
    run_dir = data_root() / "models" / "finetuned" / f"{base['version']}-{dataset['version']}"
    extras: dict[str, Any] = {
        "train": trainer.train_params(),
        "base_model_dir": base["path"],
        "base_model_version": base["version"],
        "dataset_path": dataset["path"],
        "dataset_version": dataset["version"],
        "output_dir": str(run_dir),  # same dir on re-run: training resumes from its checkpoints
        "registered_model": mlflow.registered_model,
        "dagster_run_id": context.run.run_id,
        "asset_key": context.asset_key.to_user_string(),
        "mlflow_ui_url": mlflow.resolved_ui_url,
    }
    context.log.info(f"training config: {json.dumps(extras, default=str)}")
    client = trainer.pipes_client(env=trainer.launch_env(mlflow.env()))
    return client.run(
        command=trainer.command(),
        context=context,
        extras=trainer.launch_extras(extras, data_root()),
        **trainer.launch_kwargs(),
    ).get_materialize_result()


@dg.asset_check(asset=finetuned_model, blocking=True)
def finetuned_beats_base(
    context: dg.AssetCheckExecutionContext, mlflow: MLflowResource
) -> dg.AssetCheckResult:
    """The challenger's held-out perplexity is finite and below its base model's.

    Blocking: a fine-tune that made the model worse (or diverged to NaN) stops the run before
    anything downstream uses it, and its registered version is tagged as failed."""
    event = context.instance.get_latest_materialization_event(finetuned_model.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "never materialized"})
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    split = meta.get("eval_split", "test")
    tuned, base = meta.get(f"{split}_perplexity"), meta.get(f"{split}_perplexity_base")
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in (tuned, base))
    passed = finite and tuned < base
    version, model = meta.get("model_version"), meta.get("registered_model")
    if version and model:
        from llmops.registry import tag_version

        mlflow.activate()
        tag_version(str(model), str(version), {"llmops.check.beats_base": str(passed).lower()})
    return dg.AssetCheckResult(
        passed=passed,
        metadata={f"{split}_perplexity": tuned, f"{split}_perplexity_base": base,
                  "finite": finite, "model_version": str(version or "")},
    )
