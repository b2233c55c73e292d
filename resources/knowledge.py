"""Structuring settings, the sentence embedder and the LanceDB vector store."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import dagster as dg

from llmops.paths import under_data_root

if TYPE_CHECKING:
    from llmops.embedding import Embedder
    from llmops.vectorstore import VectorStore


class StructuringResource(dg.ConfigurableResource):
    """Chunking bounds and the data-quality thresholds the asset checks enforce."""

    max_tokens: int = 200
    overlap_tokens: int = 24
    allowed_languages: list[str] = ["en", "ar", "fr", "de", "es", "und"]
    near_duplicate_threshold: float = 0.9
    max_near_duplicate_ratio: float = 0.2
    expectations_dir: str = "configs/expectations"


class EmbedderResource(dg.ConfigurableResource):
    """A sentence-transformers model: packaged MiniLM by default, any local path or hub id."""

    model: str | None = None
    device: str = "auto"
    batch_size: int = 64

    @cached_property
    def embedder(self) -> Embedder:
        from llmops.embedding import Embedder

        return Embedder(self.model, device=self.device, batch_size=self.batch_size)


class VectorStoreResource(dg.ConfigurableResource):
    """LanceDB: a local folder by default, an object-store URI (s3://, gs://, az://) by config."""

    uri: str | None = None  # default: $LLMOPS_DATA_DIR/lancedb
    table: str = "chunks"
    ann_min_rows: int = 5000

    def open(self, dim: int | None = None) -> VectorStore:
        from llmops.vectorstore import VectorStore

        return VectorStore(under_data_root(self.uri, "lancedb"), table=self.table, dim=dim)
