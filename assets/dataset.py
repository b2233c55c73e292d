"""Instruction dataset: grounded instruction/response pairs from the knowledge base."""

from typing import Any

import dagster as dg

from assets.structuring import ALL_DOCUMENTS, chunk_embeddings, current_corpus
from llmops.paths import data_root
from resources.knowledge import VectorStoreResource
from resources.llm import DatasetBuilderResource, LLMEndpointResource
from resources.mlflow import MLflowResource


@dg.asset(
    ins={"chunks": ALL_DOCUMENTS, "entities": ALL_DOCUMENTS},
    deps=[chunk_embeddings],
    group_name="fine_tuning",
    kinds={"huggingface", "mlflow"},
    code_version="1",
)
def instruction_dataset(
    context: dg.AssetExecutionContext,
    chunks: dict[str, list[dict[str, Any]]],
    entities: dict[str, list[dict[str, Any]]],
    vector_store: VectorStoreResource,
    dataset_builder: DatasetBuilderResource,
    llm: LLMEndpointResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """QA, summarisation, entity and table-lookup pairs, split by document, content-versioned."""
    from llmops.dataset import (
        BuildConfig,
        build_instruction_dataset,
        log_dataset_to_mlflow,
    )

    _, rows, by_chunk = current_corpus(context, chunks, entities)
    if not rows:
        raise dg.Failure("instruction_dataset: no ingested document; run ingest_documents first")
    store = vector_store.open()
    generator = _generator(dataset_builder, llm)
    cfg = BuildConfig(
        split=tuple(dataset_builder.split),
        seed=dataset_builder.seed,
        max_examples_per_chunk=dataset_builder.max_examples_per_chunk,
    )
    build = build_instruction_dataset(rows, by_chunk, generator, cfg)
    path = data_root() / "datasets" / build.version
    if not path.exists():  # content-addressed: an identical dataset is never written twice
        build.dataset_dict.save_to_disk(str(path))
    mlflow.activate()
    import mlflow as mlf

    with mlf.start_run(
        run_name=f"dataset-{build.version}",
        tags={"dagster_run_id": context.run.run_id, "stage": "dataset"},
    ) as run:
        log_dataset_to_mlflow(build.dataset_dict, build.version, name="instruction_dataset")
    splits = {name: len(ds) for name, ds in build.dataset_dict.items()}
    return dg.MaterializeResult(
        metadata={
            "version": build.version,
            "path": dg.MetadataValue.path(str(path)),
            "generator": type(generator).__name__,
            "lancedb_table_version": store.version,
            **{f"{k}_examples": v for k, v in splits.items()},
            "stats": dg.MetadataValue.json(build.stats),
            "sample": dg.MetadataValue.md(_sample(build.dataset_dict["train"])),
            "mlflow_run_id": run.info.run_id,
        },
        data_version=dg.DataVersion(build.version),
    )


def _generator(builder: DatasetBuilderResource, llm: LLMEndpointResource) -> Any:
    from llmops.dataset import OfflineGenerator

    if builder.generator == "offline":
        return OfflineGenerator(seed=builder.seed)
    if builder.generator == "autogen":
        if not llm.configured:
            raise dg.Failure(
                "dataset_builder.generator=autogen needs resources.llm.base_url and model "
                "(an OpenAI-compatible endpoint)"
            )
        from llmops.agents import AutoGenGenerator, make_model_client

        return AutoGenGenerator(
            lambda: make_model_client(
                llm.base_url,
                llm.model,
                llm.api_key,
                temperature=llm.temperature,
                timeout=llm.timeout_s,
            )
        )
    raise dg.Failure(f"dataset_builder.generator: unknown {builder.generator!r} (offline|autogen)")


def _sample(ds: Any, n: int = 5) -> str:
    lines = ["| task | instruction | response |", "|---|---|---|"]
    for ex in ds.select(range(min(n, len(ds)))):
        cells = [
            " ".join(str(ex[k]).split()).replace("|", "\\|")[:100]
            for k in ("task", "instruction", "response")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
