"""One dynamic partition per document version, keyed by a content hash."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from resources.documents import DocumentStoreResource

documents_partitions = dg.DynamicPartitionsDefinition(name="documents")


@dataclass(frozen=True)
class PartitionSync:
    added: list[str]
    removed: list[str]
    current: list[str]
    # Set when the guard refused the sync: the keys that would have gone, and why.
    refused: list[str] = field(default_factory=list)
    report: str = ""


def sync_document_partitions(
    instance: dg.DagsterInstance,
    docs: DocumentStoreResource,
    allow_mass_removal: bool | None = None,
) -> PartitionSync:
    """Make the partitions mirror the inbox: new or changed files become new partitions; keys of
    files that changed or left the inbox are dropped (their stored outputs are kept, and the
    knowledge base removes their chunks on its next materialization).

    Dropping more than ``docs.max_removal_share`` of the documents at once is refused unless
    ``allow_mass_removal`` (default: the resource's flag): then nothing at all changes and
    ``refused``/``report`` say what would have gone. Every drop is written to the removal log,
    which ``restore_removed_documents`` undoes."""
    from llmops.ingestion.docstore import removal_refused, removal_report

    files = docs.inbox_files()
    current = set(files)
    existing = set(instance.get_dynamic_partitions(documents_partitions.name))
    added, removed = sorted(current - existing), sorted(existing - current)
    # A new version of a file replaces its old key; only keys whose file is gone from the
    # listing count against the guard (a re-export of every document is not a mass deletion).
    paths = {f.path for f in files.values()}
    gone = [k for k in removed if (docs.inbox_index.document(k) or {}).get("path") not in paths]
    allow = docs.allow_mass_removal if allow_mass_removal is None else allow_mass_removal
    over = removal_refused(len(existing), len(gone), docs.max_removal_share)
    if over and not allow:
        report = removal_report(docs.inbox, gone, len(existing), docs.max_removal_share)
        return PartitionSync(added=[], removed=[], current=sorted(existing), refused=gone,
                             report=report)
    if removed:
        records = [docs.inbox_index.document(k) or {"doc_id": k} for k in removed]
        docs.removal_log.record(docs.inbox, records, forced=over)
    if added:
        instance.add_dynamic_partitions(documents_partitions.name, added)
    for key in removed:
        instance.delete_dynamic_partition(documents_partitions.name, key)
    return PartitionSync(added=added, removed=removed, current=sorted(current))


def restore_removed_documents(
    instance: dg.DagsterInstance, docs: DocumentStoreResource, keys: list[str] | None = None
) -> tuple[dict[str, str], PartitionSync]:
    """Undo a removal: put the documents of the last logged removal (or ``keys``) back into the
    inbox from their stored copies where they are missing, then sync, which re-adds their
    partitions (same content, same key). Returns doc_id -> outcome and the sync."""
    from llmops.ingestion.docstore import restore_documents

    log = docs.removal_log.entries()
    if keys:
        by_id = {d["doc_id"]: d for entry in log for d in entry["documents"]}
        unknown = sorted(set(keys) - set(by_id))
        if unknown:
            raise ValueError(f"not in the removal log {docs.removal_log.path}: {unknown}")
        documents = [by_id[k] for k in keys]
    elif log:
        documents = log[-1]["documents"]
    else:
        raise ValueError(f"nothing to restore: the removal log {docs.removal_log.path} is empty")
    outcome = restore_documents(documents, docs.document_store)
    return outcome, sync_document_partitions(instance, docs)
