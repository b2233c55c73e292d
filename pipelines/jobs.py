"""Jobs: per-document ingestion (partitioned) and the corpus-level lifecycle."""

from __future__ import annotations

import dagster as dg

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

# What the drift sensor requests: a new dataset, base and challenger on the current corpus. The
# per-candidate evaluation, A/B and promotion follow as their own runs (one partitions
# definition per job), exactly as `llmops demo` chains them.
retraining_job = dg.define_asset_job(
    "retraining",
    selection=dg.AssetSelection.assets("instruction_dataset", "base_model", "finetuned_model"),
    description="Drift-triggered retraining: dataset -> base -> LoRA challenger.",
)


# --- promotion: rollback (restores `previous_champion` as `champion`; op in assets/promotion.py)
from assets.promotion import rollback_champion  # noqa: E402


@dg.job(description="Restore `previous_champion` as `champion` in the MLflow registry.")
def rollback_job() -> None:
    rollback_champion()


# --- end promotion
