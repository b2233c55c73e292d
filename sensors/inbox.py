"""New-document sensor: every new or changed inbox file becomes a partition and an ingest run."""

import dagster as dg

from assets.partitions import documents_partitions, sync_document_partitions
from pipelines.jobs import ingest_job
from resources.documents import DocumentStoreResource


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers new/changed inbox files as partitions and ingests each one.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, docs: DocumentStoreResource):
    sync = sync_document_partitions(context.instance, docs)
    if not sync.added and not sync.removed:
        return dg.SkipReason(f"no change in {docs.inbox} ({len(sync.current)} documents)")
    context.log.info(f"inbox: +{len(sync.added)} -{len(sync.removed)} documents")
    # run_key = partition key: a document version is ingested once, however often we poll.
    return [dg.RunRequest(run_key=key, partition_key=key) for key in sync.added]


__all__ = ["documents_partitions", "inbox_sensor"]
