"""The new-document sensor across add / change / delete, twice in a row, on a real instance.

Real ingestion (TXT through the ingest_documents job), the packaged embedder and LanceDB
through the indexing job: what the sensor requests is executed, then the knowledge base is
checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("LLMOPS_INBOX", str(inbox))
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from pipelines import definitions
    from pipelines.jobs import indexing_job, ingest_job
    from sensors.inbox import inbox_sensor

    resources = definitions.build_resources("ci")
    defs = dg.Definitions(assets=definitions.defs.assets, jobs=[ingest_job, indexing_job],
                          resources=resources)
    with dg.instance_for_test() as instance:
        state = {"cursor": None}

        def tick() -> tuple[list[dg.RunRequest], str | None]:
            ctx = dg.build_sensor_context(instance=instance, cursor=state["cursor"],
                                          resources={"docs": resources["docs"]})
            result = inbox_sensor(ctx)
            if isinstance(result, dg.SkipReason):
                return [], None
            state["cursor"] = result.cursor or state["cursor"]
            return list(result.run_requests), result.cursor

        def execute(requests: list[dg.RunRequest]) -> None:
            for request in requests:
                job = defs.resolve_job_def(request.job_name)
                assert job.execute_in_process(instance=instance,
                                              partition_key=request.partition_key).success

        def indexed_docs() -> set[str]:
            store = resources["vector_store"].open()
            return {r["doc_id"] for r in store.rows(columns=["doc_id"]).to_pylist()}

        yield inbox, instance, tick, execute, indexed_docs


def _write(inbox: Path, name: str, topic: str) -> None:
    (inbox / name).write_text(
        f"Report on {topic}.\n\n" + " ".join(
            f"The {topic} programme reached milestone {i} in the district of Lowmere."
            for i in range(12)) + "\n")


def test_add_change_delete_twice(world) -> None:
    inbox, instance, tick, execute, indexed_docs = world
    from assets.partitions import documents_partitions

    def partitions() -> set[str]:
        return set(instance.get_dynamic_partitions(documents_partitions.name))

    for round_ in range(2):  # the whole cycle twice in a row
        # add: one ingestion run per new document, then (once ingested) one indexing run
        _write(inbox, f"a{round_}.txt", f"reservoirs {round_}")
        _write(inbox, f"b{round_}.txt", f"pipelines {round_}")
        requests, _ = tick()
        assert {r.job_name for r in requests} == {"ingest_documents"} and len(requests) == 2
        added = {r.partition_key for r in requests}
        assert added <= partitions()
        execute(requests)
        (index,), _ = tick()
        assert index.job_name == "indexing" and index.run_key.startswith("index-")
        execute([index])
        assert added <= indexed_docs()
        assert tick() == ([], None)  # nothing new: nothing requested

        # change: the new version is ingested and indexed, the old one leaves
        before = partitions()
        _write(inbox, f"a{round_}.txt", f"aqueducts {round_}")
        (ingest,), _ = tick()
        new_key = ingest.partition_key
        old_key = (before - partitions()).pop()
        assert new_key not in before and old_key in added
        execute([ingest])
        (index,), _ = tick()
        execute([index])
        docs = indexed_docs()
        assert new_key in docs and old_key not in docs

        # delete: the partition and its chunks go, with no ingestion
        (inbox / f"b{round_}.txt").unlink()
        gone = next(k for k in added if k != old_key)
        (index,), cursor = tick()
        assert index.job_name == "indexing" and gone not in partitions()
        execute([index])
        assert gone not in indexed_docs() and new_key in indexed_docs()
        assert tick() == ([], None)
        assert json.loads(cursor)["indexed"]


def test_emptied_inbox_is_refused_then_purged_with_the_override(tmp_path: Path) -> None:
    from assets.partitions import documents_partitions
    from resources.documents import DocumentStoreResource
    from sensors.inbox import inbox_sensor

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        _write(inbox, name, name[0])

    def docs(**kw) -> DocumentStoreResource:
        return DocumentStoreResource(inbox=str(inbox), store=str(tmp_path / "store"),
                                     index_path=str(tmp_path / "index.sqlite"),
                                     removal_log_path=str(tmp_path / "removals.jsonl"), **kw)

    with dg.instance_for_test() as instance:
        def tick(resource: DocumentStoreResource):
            return inbox_sensor(dg.build_sensor_context(instance=instance,
                                                        resources={"docs": resource}))

        assert len(tick(docs()).run_requests) == 3
        keys = set(instance.get_dynamic_partitions(documents_partitions.name))
        for f in inbox.iterdir():
            f.unlink()
        skipped = tick(docs())
        assert isinstance(skipped, dg.SkipReason)
        assert "refusing to drop 3 of 3 documents" in (skipped.skip_message or "")
        assert set(instance.get_dynamic_partitions(documents_partitions.name)) == keys
        purged = tick(docs(allow_mass_removal=True))
        assert not isinstance(purged, dg.SkipReason)
        assert instance.get_dynamic_partitions(documents_partitions.name) == []
        (entry,) = docs().removal_log.entries()
        assert {d["doc_id"] for d in entry["documents"]} == keys and entry["forced"]
