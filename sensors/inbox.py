"""New-document sensor: the inbox is the source of truth for what the knowledge base holds.

Every evaluation mirrors the inbox into the `documents` partitions: a new or changed file (its
content hash is the partition key) gets one ingestion run, a replaced or deleted file's key is
dropped. Once no ingestion of the current inbox is pending, one `indexing` run rebuilds the
knowledge base, which drops the chunks of documents that left. The cursor holds the inbox state
that was last indexed and run keys derive from it, so an unchanged inbox requests nothing and a
change is ingested and indexed exactly once.

A listing that would drop more than ``max_removal_share`` of the documents (an empty or mistyped
S3 prefix) changes nothing: the tick is skipped with the count and names, and logged.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from assets.partitions import sync_document_partitions
from pipelines.jobs import indexing_job, ingest_job
from resources.documents import DocumentStoreResource

PENDING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
           dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def inbox_state(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


@dg.sensor(
    jobs=[ingest_job, indexing_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Ingests new/changed inbox files once each, then re-indexes; deleted or "
    "replaced files leave the index.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, docs: DocumentStoreResource):
    sync = sync_document_partitions(context.instance, docs)
    if sync.refused:
        context.log.warning(sync.report)
        return dg.SkipReason(sync.report)
    state = inbox_state(sync.current)
    indexed = json.loads(context.cursor)["indexed"] if context.cursor else None
    if not sync.added and state == indexed:
        return dg.SkipReason(f"no change in {docs.inbox} ({len(sync.current)} documents)")
    if sync.added or sync.removed:
        context.log.info(f"inbox: +{len(sync.added)} -{len(sync.removed)} documents")
    # run_key = partition key: a document version is ingested once, however often we poll.
    requests = [dg.RunRequest(run_key=key, partition_key=key, job_name=ingest_job.name)
                for key in sync.added]
    pending = context.instance.get_runs(
        dg.RunsFilter(job_name=ingest_job.name, statuses=PENDING), limit=1
    )
    if requests or pending:
        return dg.SensorResult(run_requests=requests)  # index once these are ingested
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=f"index-{state}", job_name=indexing_job.name,
            tags={"llmops/trigger": "inbox", "llmops/inbox_state": state},
        )],
        cursor=json.dumps({"indexed": state}),
    )
