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
    """LanceDB: a local folder by default, an object-store URI (s3://, gs://, az://) by config.

    Credentials come from the environment (``AWS_ACCESS_KEY_ID``...), read by LanceDB itself;
    ``storage_options`` adds or overrides LanceDB object-store keys (``aws_endpoint``,
    ``allow_http``, ``aws_region``...) over those derived from ``AWS_ENDPOINT_URL``.
    """

    uri: str | None = None  # default: $LLMOPS_LANCEDB_URI, else $LLMOPS_DATA_DIR/lancedb
    table: str = "chunks"
    ann_min_rows: int = 5000
    storage_options: dict[str, str] = {}

    def open(self, dim: int | None = None) -> VectorStore:
        from llmops.paths import object_store_options
        from llmops.vectorstore import VectorStore

        uri = under_data_root(self.uri, "lancedb")
        options = {**(object_store_options(uri) or {}), **self.storage_options} or None
        return VectorStore(uri, table=self.table, dim=dim, storage_options=options)
