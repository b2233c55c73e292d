"""One dynamic partition per document version, keyed by a content hash."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from resources.documents import DocumentStoreResource

documents_partitions = dg.DynamicPartitionsDefinition(name="documents")


@dataclass(frozen=True)
class PartitionSync:
    added: list[str]
    removed: list[str]
    current: list[str]


def sync_document_partitions(
    instance: dg.DagsterInstance, docs: DocumentStoreResource
) -> PartitionSync:
    """Make the partitions mirror the inbox: new or changed files become new partitions; keys of
    files that changed or left the inbox are dropped (their stored outputs are kept, and the
    knowledge base removes their chunks on its next materialization)."""
    current = set(docs.inbox_files())
    existing = set(instance.get_dynamic_partitions(documents_partitions.name))
    added, removed = sorted(current - existing), sorted(existing - current)
    if added:
        instance.add_dynamic_partitions(documents_partitions.name, added)
    for key in removed:
        instance.delete_dynamic_partition(documents_partitions.name, key)
    return PartitionSync(added=added, removed=removed, current=sorted(current))
