"""Inbox, immutable document store and quarantine table."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from llmops.paths import under_data_root

if TYPE_CHECKING:
    from llmops.ingestion.docstore import DocumentStore, InboxFile, Quarantine


class DocumentStoreResource(dg.ConfigurableResource):
    """Where documents arrive (``inbox``) and where their immutable copies live (``store``)."""

    inbox: str = "examples/inbox"
    patterns: list[str] = ["**/*"]
    store: str | None = None  # default: $LLMOPS_DATA_DIR/documents
    quarantine_path: str | None = None  # default: $LLMOPS_DATA_DIR/quarantine.jsonl

    _hash_cache: dict[Any, str] = PrivateAttr(default_factory=dict)

    @cached_property
    def document_store(self) -> DocumentStore:
        from llmops.ingestion.docstore import DocumentStore

        return DocumentStore(under_data_root(self.store, "documents"))

    @cached_property
    def quarantine(self) -> Quarantine:
        from llmops.ingestion.docstore import Quarantine

        return Quarantine(under_data_root(self.quarantine_path, "quarantine.jsonl"))

    def inbox_files(self) -> dict[str, InboxFile]:
        """Current inbox content by document id (the partition key)."""
        from llmops.ingestion.docstore import inbox_document_ids

        return inbox_document_ids(self.inbox, self.patterns, cache=self._hash_cache)

    def locate(self, doc_id: str) -> InboxFile:
        files = self.inbox_files()
        if doc_id not in files:
            raise dg.Failure(
                description=(
                    f"document {doc_id} is no longer in the inbox {self.inbox} (changed or "
                    "removed); its new version, if any, is a new partition"
                ),
                allow_retries=False,
            )
        return files[doc_id]
