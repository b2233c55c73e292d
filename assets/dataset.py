"""Instruction dataset: grounded instruction/response pairs from the knowledge base."""

from typing import Any

import dagster as dg

from assets.structuring import ALL_DOCUMENTS, chunk_embeddings, current_corpus
from llmops.lineage import code_version, resource_settings
from llmops.paths import data_root
from resources.knowledge import VectorStoreResource
from resources.llm import DatasetBuilderResource, LLMEndpointResource
from resources.mlflow import MLflowResource

# The blocking checks of a dataset version (assets/checks.py); training uses only versions
# that passed all of them.
DATASET_CHECKS = {
    "no_empty_fields": "every example has an instruction, a context and a response",
    "no_leakage": "no document, context or response appears in two splits",
    "minimum_size": "enough training examples to be worth a training run",
}


@dg.asset(
    ins={"chunks": ALL_DOCUMENTS, "entities": ALL_DOCUMENTS},
    deps=[chunk_embeddings],
    group_name="fine_tuning",
    kinds={"huggingface", "mlflow"},
    code_version=code_version(
        "llmops.dataset", "llmops.agents", settings=resource_settings("dataset_builder", "llm")
    ),
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
    from llmops.dataset import BuildConfig, build_instruction_dataset

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
    experiment_id = mlflow.activate()
    run_id = dataset_run(build, context.run.run_id, context.asset_key.to_user_string())
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
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id, experiment_id)),
            **_trigger_metadata(context.run.tags),
        },
        data_version=dg.DataVersion(build.version),
    )


def _trigger_metadata(tags: dict[str, str]) -> dict[str, Any]:
    """Why this run happened, on the run's first asset: the drift report (markdown and plot)
    when the drift sensor asked for it."""
    import base64
    from pathlib import Path

    meta: dict[str, Any] = {}
    if "llmops/trigger" in tags:
        meta["trigger"] = tags["llmops/trigger"]
    plot = Path(tags.get("llmops/drift_plot", ""))
    if plot.suffix == ".png" and plot.is_file():
        report = plot.with_suffix(".md")
        if report.is_file():
            meta["drift_report"] = dg.MetadataValue.md(report.read_text())
        data = base64.b64encode(plot.read_bytes()).decode()
        meta["drift_plot"] = dg.MetadataValue.md(f"![drift](data:image/png;base64,{data})")
    return meta


def dataset_run(build: Any, dagster_run_id: str, asset_key: str) -> str:
    """The MLflow run of this dataset version: one per version, however often it is
    materialized (an unchanged corpus rebuilds the same version)."""
    import mlflow as mlf

    from llmops.dataset import log_dataset_to_mlflow

    found = mlf.search_runs(
        filter_string=f"tags.stage = 'dataset' AND tags.dataset_version = '{build.version}'",
        max_results=1, output_format="list",
    )
    if found:
        return found[0].info.run_id
    tags = {"dagster_run_id": dagster_run_id, "dagster_asset_key": asset_key,
            "stage": "dataset", "dataset_version": build.version}
    with mlf.start_run(run_name=f"dataset-{build.version}", tags=tags) as run:
        log_dataset_to_mlflow(build.dataset_dict, build.version, name="instruction_dataset")
    return run.info.run_id


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
        from llmops.agents import AutoGenGenerator, PairCache, make_model_client

        return AutoGenGenerator(
            lambda: make_model_client(
                llm.base_url,
                llm.model,
                llm.api_key,
                temperature=llm.temperature,
                timeout=llm.timeout_s,
            ),
            max_pairs=builder.max_examples_per_chunk,
            # an unchanged chunk is never sent again: same dataset version, no new LLM cost
            cache=PairCache(data_root() / "cache" / "autogen_pairs.sqlite"),
            model_key=f"{llm.base_url}|{llm.model}|temperature={llm.temperature}",
        )
    raise dg.Failure(f"dataset_builder.generator: unknown {builder.generator!r} (offline|autogen)")


def _sample(ds: Any, n: int = 5) -> str:
    from llmops.text import markdown_table

    rows = [["task", "instruction", "response"]]
    rows += [[ex[k] for k in rows[0]] for ex in ds.select(range(min(n, len(ds))))]
    return markdown_table(rows, max_cell_chars=100)
