"""The production instance config (deploy/dagster.postgres.yaml) on a real PostgreSQL server."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from tests import postgres_server
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_server.available(), reason="PostgreSQL binaries not found"),
]


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server.postgres_server() as url:
        yield url


def test_sensor_partitions_and_ingestion_run_are_stored_in_postgres(pg_url, tmp_path, monkeypatch):
    import psycopg

    from assets.ingestion import extracted_pages, raw_documents
    from assets.partitions import documents_partitions
    from resources.documents import DocumentStoreResource
    from resources.ingestion import IngestionResource
    from resources.storage import ParquetIOManager
    from sensors.inbox import inbox_sensor

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 defaults postgresql:// to psycopg 3.
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL", pg_url.replace("postgresql://", "postgresql+psycopg2://")
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "note.txt").write_text("Reservoir storage stood at 41% on September 9, 2024.\n")
    docs = DocumentStoreResource(
        inbox=str(inbox), store=str(tmp_path / "store"), quarantine_path=str(tmp_path / "q.jsonl")
    )

    with dg.DagsterInstance.from_config(str(home)) as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"docs": docs})
        requests = inbox_sensor(ctx).run_requests
        assert len(requests) == 1
        key = requests[0].partition_key
        assert instance.get_dynamic_partitions(documents_partitions.name) == [key]

        result = dg.materialize(
            [raw_documents, extracted_pages],
            partition_key=key,
            instance=instance,
            resources={
                "docs": docs,
                "ingestion": IngestionResource(),
                "io_manager": ParquetIOManager(base_dir=str(tmp_path / "assets")),
            },
        )
        assert result.success
        run_id = result.run_id

    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("select status from runs where run_id = %s", (run_id,)).fetchone()
        partitions = conn.execute("select partition from dynamic_partitions").fetchall()
    assert stored == ("SUCCESS",)
    assert partitions == [(key,)]
