"""Jobs: per-document ingestion (partitioned) and the corpus-level lifecycle."""

from __future__ import annotations

import dagster as dg

from assets.evaluation import candidates_partitions
from assets.partitions import documents_partitions

INGEST_ASSETS = ["raw_documents", "extracted_pages", "chunks", "entities"]
# The `evaluation` group (evaluation per candidate partition, ab_comparison, promotion) is not
# in lifecycle: a job takes one partitions definition; `llmops demo` materializes it afterwards.
DECISION_GROUP = "evaluation"

ingest_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    partitions_def=documents_partitions,
    description="One document version: bytes -> pages -> chunks -> entities.",
)

lifecycle_job = dg.define_asset_job(
    "lifecycle",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*INGEST_ASSETS)
    - dg.AssetSelection.groups(DECISION_GROUP),
    description=(
        "Corpus-level lifecycle over every ingested document: knowledge base, retrieval "
        "evaluation, instruction dataset, base model, LoRA challenger."
    ),
)

indexing_job = dg.define_asset_job(
    "indexing",
    selection=dg.AssetSelection.assets("chunk_embeddings", "retrieval_evaluation"),
    # The knowledge-base job: refreshes embeddings and the index without training. The inbox
    # sensor requests it once no ingestion is pending (chunks themselves are per document, so
    # they are refreshed by `ingest_documents`: a backfill of all partitions re-ingests all).
    description="Knowledge base: embeddings and LanceDB index over every ingested document "
    "(removed documents leave it) and its retrieval evaluation; no training.",
)

# What the drift sensor and the retrain schedule request. Evaluation, A/B and promotion follow
# on their own (their assets are eager: tests/test_automation.py), one partitions definition
# per run.
training_job = dg.define_asset_job(
    "training",
    selection=dg.AssetSelection.assets("instruction_dataset", "base_model", "finetuned_model"),
    description="Dataset -> base model -> LoRA challenger (one at a time: the training pool).",
)

evaluation_job = dg.define_asset_job(
    "evaluate",  # job names must differ from asset names
    selection=dg.AssetSelection.assets("evaluation"),
    partitions_def=candidates_partitions,
    description="One candidate (partition) answers the test split RAG-style and is scored.",
)

promotion_job = dg.define_asset_job(
    "promote",
    selection=dg.AssetSelection.assets("ab_comparison", "promotion"),
    description="Paired A/B of the evaluated candidates, then the gated registry promotion.",
)


# --- promotion: rollback (restores `previous_champion` as `champion`; op in assets/promotion.py)
from assets.promotion import rollback_champion  # noqa: E402


@dg.job(description="Restore `previous_champion` as `champion` in the MLflow registry.")
def rollback_job() -> None:
    rollback_champion()


# --- end promotion
