"""Inbox, immutable document store, inbox index, removal log and quarantine."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from llmops.paths import under_data_root

if TYPE_CHECKING:
    from llmops.ingestion.docstore import (
        DocumentStore,
        InboxFile,
        InboxIndex,
        Quarantine,
        RemovalLog,
    )


class DocumentStoreResource(dg.ConfigurableResource):
    """Where documents arrive (``inbox``) and where their immutable copies live (``store``).

    Object-store locations (``s3://bucket/prefix``) take their endpoint and credentials from the
    environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). The
    inbox index and the removal log are always local files under the data root.
    """

    inbox: str = "examples/inbox"
    patterns: list[str] = ["**/*"]
    store: str | None = None  # default: $LLMOPS_DATA_DIR/documents
    quarantine_path: str | None = None  # default: $LLMOPS_DATA_DIR/quarantine.jsonl
    index_path: str | None = None  # default: $LLMOPS_DATA_DIR/inbox_index.sqlite
    removal_log_path: str | None = None  # default: $LLMOPS_DATA_DIR/partition_removals.jsonl
    max_removal_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="A partition sync refuses to drop more than this share of the documents at "
        "once (an empty or mistyped listing looks like 'everything was deleted').",
    )
    allow_mass_removal: bool = Field(
        default=False, description="Override the max_removal_share guard (deliberate purges)."
    )

    _hash_cache: dict[Any, str] = PrivateAttr(default_factory=dict)

    @cached_property
    def document_store(self) -> DocumentStore:
        from llmops.ingestion.docstore import DocumentStore

        return DocumentStore(under_data_root(self.store, "documents"))

    @cached_property
    def quarantine(self) -> Quarantine:
        from llmops.ingestion.docstore import Quarantine

        return Quarantine(under_data_root(self.quarantine_path, "quarantine.jsonl"))

    @cached_property
    def inbox_index(self) -> InboxIndex:
        from llmops.ingestion.docstore import InboxIndex

        return InboxIndex(_local_file("index_path", self.index_path, "inbox_index.sqlite"))

    @cached_property
    def removal_log(self) -> RemovalLog:
        from llmops.ingestion.docstore import RemovalLog

        return RemovalLog(
            _local_file("removal_log_path", self.removal_log_path, "partition_removals.jsonl")
        )

    def inbox_files(self) -> dict[str, InboxFile]:
        """Current inbox content by document id (the partition key)."""
        from llmops.ingestion.docstore import inbox_document_ids

        return inbox_document_ids(
            self.inbox, self.patterns, cache=self._hash_cache, index=self.inbox_index
        )

    def locate(self, doc_id: str) -> InboxFile:
        """The inbox file of one document version: an index lookup and one stat, not a re-hash
        of the inbox. Read it with ``read_verified`` (the bytes must still hash to the key)."""
        from llmops.ingestion.docstore import locate_document

        found = locate_document(self.inbox, doc_id, self.inbox_index, self.patterns)
        if found is None:
            raise self.gone(doc_id)
        return found

    def read(self, file: InboxFile) -> bytes:
        """``file``'s bytes, verified against its document id."""
        from llmops.ingestion.docstore import InboxChanged

        try:
            return file.read_verified()
        except (InboxChanged, FileNotFoundError) as err:
            raise self.gone(file.doc_id, str(err)) from err

    def gone(self, doc_id: str, detail: str = "") -> dg.Failure:
        return dg.Failure(
            description=(
                f"document {doc_id} is no longer in the inbox {self.inbox} (changed or "
                f"removed); its new version, if any, is a new partition{': ' if detail else ''}"
                f"{detail}"
            ),
            allow_retries=False,
        )


def _local_file(field: str, configured: str | None, default: str) -> str:
    """``configured`` or ``default`` under the data root; SQLite and the removal log need a
    local file (their appends and locks do not exist on object stores)."""
    path = under_data_root(configured, default)
    if "://" in path:
        raise ValueError(f"{field} must be a local file, got {path!r}")
    return path
