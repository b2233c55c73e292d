"""The inbox against bad listings, races and object storage (issue 15; the S3 part of issue 12).

A real S3 API (moto's server on a free localhost port, credentials and endpoint from the
environment as in production), a real Dagster instance, real SQLite and real processes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llmops.ingestion import document_id
from llmops.ingestion.docstore import (
    DocumentStore,
    InboxIndex,
    Quarantine,
    check_listed_size,
    inbox_document_ids,
    removal_refused,
    scan_inbox,
)
from tests.servers import s3_server

BUCKET = "llmops-inbox-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """One moto server for the module; its endpoint reaches s3fs/botocore through the
    environment (AWS_ENDPOINT_URL), exactly as a deployment configures it."""
    with s3_server(BUCKET) as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _forget_s3_clients()


def _forget_s3_clients() -> None:
    # fsspec caches filesystem instances (with their endpoint); another test's server must not
    # be reached through a stale one.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture()
def bucket(s3, request) -> str:
    """A fresh prefix per test in the shared bucket."""
    _forget_s3_clients()
    return f"{BUCKET}/{request.node.name[:40]}"


def _client(s3: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _upload(s3: dict[str, str], bucket: str, files: dict[str, bytes]) -> None:
    name, _, prefix = bucket.partition("/")
    client = _client(s3)
    for key, data in files.items():
        client.put_object(Bucket=name, Key=f"{prefix}/{key}", Body=data)


def _docs(tmp_path: Path, inbox: str, store: str | None = None, **kw):
    from resources.documents import DocumentStoreResource

    return DocumentStoreResource(
        inbox=inbox,
        store=store or str(tmp_path / "store"),
        quarantine_path=str(tmp_path / "quarantine.jsonl"),
        index_path=str(tmp_path / "index.sqlite"),
        removal_log_path=str(tmp_path / "removals.jsonl"),
        **kw,
    )


DOCS = {f"report-{i}.txt": f"Report {i} on the reservoirs.\n".encode() * 5 for i in range(4)}


# --------------------------------------------------------------------- issue 12: S3 API


def test_inbox_store_and_quarantine_on_s3(s3, bucket) -> None:
    _upload(s3, bucket, {"a.pdf": b"aaa", "deep/b.txt": b"bbb", ".hidden": b"x"})
    files = scan_inbox(f"s3://{bucket}/inbox-missing")
    assert files == []  # a wrong prefix lists nothing rather than failing: hence the guard
    files = scan_inbox(f"s3://{bucket}")
    assert [f.name for f in files] == ["a.pdf", "b.txt"]
    assert all(f.etag and f.path.startswith("s3://") for f in files)
    ids = inbox_document_ids(f"s3://{bucket}")
    assert ids[document_id(b"bbb", "b.txt")].read_bytes() == b"bbb"
    # a new upload by someone else is seen by the same (cached) filesystem on the next scan
    _upload(s3, bucket, {"c.txt": b"ccc"})
    assert document_id(b"ccc", "c.txt") in inbox_document_ids(f"s3://{bucket}")

    store = DocumentStore(f"s3://{bucket}/store")
    path = store.put(b"stored bytes")
    sha = hashlib.sha256(b"stored bytes").hexdigest()
    assert path == f"s3://{bucket}/store/{sha[:2]}/{sha}" and store.exists(sha)
    assert store.put(b"stored bytes") == path and store.get(sha) == b"stored bytes"
    with pytest.raises(KeyError, match="not in the store"):
        store.get("0" * 64)

    q = Quarantine(f"s3://{bucket}/quarantine")
    assert q.entries() == []
    q.record(name="bad.pdf", sha256="a" * 64, code="malformed", reason="cut", run_id="r1")
    q.record(name="x.docx", sha256="b" * 64, code="unsupported", reason="nope", run_id="r2")
    q.record_resolved("a" * 64, "bad.pdf", run_id="r3")
    entries = q.entries()
    assert [(e["name"], e["status"]) for e in entries] == [("bad.pdf", "resolved"),
                                                          ("x.docx", "open")]
    assert set(q.open_entries()) == {"b" * 64}
    # one object per record: nothing was rewritten
    name, _, prefix = bucket.partition("/")
    listed = _client(s3).list_objects_v2(Bucket=name, Prefix=f"{prefix}/quarantine.d/")
    assert listed["KeyCount"] == 3


# --------------------------------------------------------------------- mass-removal guard


def test_guard_arithmetic() -> None:
    assert not removal_refused(existing=0, removing=0, max_share=0.5)
    assert not removal_refused(existing=4, removing=2, max_share=0.5)
    assert removal_refused(existing=4, removing=3, max_share=0.5)
    assert removal_refused(existing=4, removing=4, max_share=0.99)
    assert not removal_refused(existing=4, removing=4, max_share=1.0)


def test_empty_or_typod_s3_listing_deletes_nothing_until_overridden(s3, bucket, tmp_path
                                                                    ) -> None:
    from assets.partitions import documents_partitions, sync_document_partitions
    from sensors.inbox import inbox_sensor

    _upload(s3, bucket, {f"inbox/{k}": v for k, v in DOCS.items()})
    good = _docs(tmp_path, f"s3://{bucket}/inbox")
    typo = _docs(tmp_path, f"s3://{bucket}/inbx")
    with dg.instance_for_test() as instance:
        def partitions() -> set[str]:
            return set(instance.get_dynamic_partitions(documents_partitions.name))

        keys = set(sync_document_partitions(instance, good).added)
        assert len(keys) == 4 and partitions() == keys

        # the typo'd prefix lists nothing: refused, nothing dropped, the report names them
        sync = sync_document_partitions(instance, typo)
        assert sync.removed == [] and sorted(sync.refused) == sorted(keys)
        assert partitions() == keys
        assert "refusing to drop 4 of 4 documents" in sync.report
        assert f"s3://{bucket}/inbx" in sync.report and sorted(keys)[0] in sync.report
        assert typo.removal_log.entries() == []

        # the sensor skips the tick with the same report (and requests nothing)
        ctx = dg.build_sensor_context(instance=instance, resources={"docs": typo})
        result = inbox_sensor(ctx)
        assert isinstance(result, dg.SkipReason) and "refusing to drop 4 of 4" in (
            result.skip_message or "")
        assert partitions() == keys

        # a partial loss within the share goes through and is logged
        name, _, prefix = bucket.partition("/")
        _client(s3).delete_object(Bucket=name, Key=f"{prefix}/inbox/report-0.txt")
        sync = sync_document_partitions(instance, good)
        assert len(sync.removed) == 1 and sync.removed[0].startswith("report-0")
        (entry,) = good.removal_log.entries()
        assert entry["forced"] is False
        assert entry["documents"][0]["path"] == f"s3://{bucket}/inbox/report-0.txt"

        # with the override, the typo'd listing removes them all (a deliberate purge)
        sync = sync_document_partitions(instance, typo, allow_mass_removal=True)
        assert len(sync.removed) == 3 and partitions() == set()
        assert typo.removal_log.entries()[-1]["forced"] is True
        # the resource flag is the same override
        assert _docs(tmp_path, "x", allow_mass_removal=True).allow_mass_removal


def test_new_versions_of_every_file_are_not_a_mass_removal(tmp_path) -> None:
    """Re-exporting every document replaces each key at the same path: nothing is gone, so the
    guard lets it through (only keys whose file left the listing count)."""
    from assets.partitions import sync_document_partitions

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, data in DOCS.items():
        (inbox / name).write_bytes(data)
    docs = _docs(tmp_path, str(inbox))
    with dg.instance_for_test() as instance:
        old = set(sync_document_partitions(instance, docs).added)
        for name, data in DOCS.items():
            (inbox / name).write_bytes(data + b"Revised.\n")
        sync = sync_document_partitions(instance, docs)
        assert not sync.refused and set(sync.removed) == old and len(sync.added) == len(old)
        (inbox / "report-0.txt").unlink()
        (inbox / "report-1.txt").unlink()
        (inbox / "report-2.txt").unlink()
        assert sync_document_partitions(instance, docs).refused  # 3 of 4 gone: refused


def test_cli_ingest_refuses_with_a_clear_error(s3, bucket, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import pipelines.cli as cli
    from assets.partitions import documents_partitions, sync_document_partitions

    _upload(s3, bucket, {f"inbox/{k}": v for k, v in DOCS.items()})
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        keys = sync_document_partitions(instance, _docs(tmp_path, f"s3://{bucket}/inbox")).added
    monkeypatch.setattr(cli, "_resource", lambda env, name: _docs(tmp_path, f"s3://{bucket}/nope"))
    result = CliRunner().invoke(cli.app, ["ingest"])
    assert result.exit_code == 1
    assert "error: refusing to drop 4 of 4 documents" in result.output
    assert "--allow-mass-removal" in result.output
    with dg.DagsterInstance.get() as instance:
        assert set(instance.get_dynamic_partitions(documents_partitions.name)) == set(keys)


def test_restore_puts_stored_copies_back_and_re_adds_partitions(s3, bucket, tmp_path,
                                                                monkeypatch) -> None:
    from typer.testing import CliRunner

    import pipelines.cli as cli
    from assets.partitions import (
        documents_partitions,
        restore_removed_documents,
        sync_document_partitions,
    )

    _upload(s3, bucket, {f"inbox/{k}": v for k, v in DOCS.items()})
    docs = _docs(tmp_path, f"s3://{bucket}/inbox", store=f"s3://{bucket}/store")
    with dg.instance_for_test() as instance:
        keys = sorted(sync_document_partitions(instance, docs).added)
        # three were ingested (raw_documents keeps the stored copy), one never was
        for name in ("report-0.txt", "report-1.txt", "report-2.txt"):
            docs.document_store.put(DOCS[name])
        # someone empties the inbox folder by mistake, and a forced sync follows
        name, _, prefix = bucket.partition("/")
        for key in DOCS:
            _client(s3).delete_object(Bucket=name, Key=f"{prefix}/inbox/{key}")
        assert len(sync_document_partitions(instance, docs, allow_mass_removal=True).removed) == 4

        outcome, sync = restore_removed_documents(instance, docs)
        restored = {k for k, v in outcome.items() if v == "restored"}
        assert len(restored) == 3
        assert [v for v in outcome.values() if v != "restored"] == ["no stored copy"]
        assert sorted(sync.added) == sorted(restored)  # same bytes, same partition keys
        assert set(instance.get_dynamic_partitions(documents_partitions.name)) == restored
        assert restored < set(keys)
        body = _client(s3).get_object(Bucket=name, Key=f"{prefix}/inbox/report-1.txt")["Body"]
        assert body.read() == DOCS["report-1.txt"]
        # a second restore finds them present and changes nothing
        outcome, sync = restore_removed_documents(instance, docs)
        assert {outcome[k] for k in restored} == {"present"} and sync.added == []
        with pytest.raises(ValueError, match="not in the removal log"):
            restore_removed_documents(instance, docs, ["nope-123"])

    # the CLI command: a clear error when there is nothing to restore
    fresh = _docs(tmp_path / "other", f"s3://{bucket}/inbox")
    cli_home = tmp_path / "home"
    cli_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(cli_home))
    monkeypatch.setattr(cli, "_resource", lambda env, name: fresh)
    result = CliRunner().invoke(cli.app, ["restore-documents"])
    assert result.exit_code == 1 and "nothing to restore" in result.output


# --------------------------------------------------------------------- index, no re-hashing


def _local_inbox(tmp_path: Path, n: int) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for i in range(n):
        (inbox / f"doc-{i}.txt").write_bytes(f"document {i}\n".encode() * 3)
    return inbox


def test_locate_is_a_lookup_and_verifies_the_bytes(tmp_path, monkeypatch) -> None:
    import llmops.ingestion.docstore as ds

    inbox = _local_inbox(tmp_path, 20)
    _docs(tmp_path, str(inbox)).inbox_files()  # the sensor's sync fills the index
    key = document_id((inbox / "doc-7.txt").read_bytes(), "doc-7.txt")

    # a fresh process (new resource, empty memory cache) must not list or hash the inbox
    def no_scan(*a, **k):
        raise AssertionError("the inbox was listed or hashed")

    monkeypatch.setattr(ds, "scan_inbox", no_scan)
    monkeypatch.setattr(ds, "hash_file", no_scan)
    docs = _docs(tmp_path, str(inbox))
    found = docs.locate(key)
    assert found.name == "doc-7.txt" and docs.read(found) == (inbox / "doc-7.txt").read_bytes()
    monkeypatch.undo()

    # rewritten between locate and read: the bytes no longer hash to the key -> the clear
    # "no longer in the inbox" failure, not an ingestion of other content under this key
    found = docs.locate(key)
    st = (inbox / "doc-7.txt").stat()
    (inbox / "doc-7.txt").write_bytes((inbox / "doc-7.txt").read_bytes().replace(b"7", b"8"))
    os.utime(inbox / "doc-7.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    with pytest.raises(dg.Failure, match=r"no longer in the inbox.*content hash differs"):
        docs.read(found)
    # the index is not fooled by the restored mtime (the ctime moved): the old key is gone and
    # the next listing sees the new version
    with pytest.raises(dg.Failure, match="no longer in the inbox"):
        docs.locate(key)
    assert document_id((inbox / "doc-7.txt").read_bytes(), "doc-7.txt") in docs.inbox_files()
    # changed normally (new size): the old key falls back to one listing, then fails clearly
    (inbox / "doc-3.txt").write_bytes(b"a new version of document three")
    old = document_id(f"document {3}\n".encode() * 3, "doc-3.txt")
    with pytest.raises(dg.Failure, match="no longer in the inbox"):
        docs.locate(old)
    # ...and that listing indexed the new version
    assert docs.inbox_index.document(document_id(b"a new version of document three",
                                                 "doc-3.txt"))["path"].endswith("doc-3.txt")
    (inbox / "doc-4.txt").unlink()
    with pytest.raises(dg.Failure, match="no longer in the inbox"):
        docs.locate(document_id(f"document {4}\n".encode() * 3, "doc-4.txt"))


def test_locate_on_s3_uses_the_etag(s3, bucket, tmp_path, monkeypatch) -> None:
    import llmops.ingestion.docstore as ds

    _upload(s3, bucket, {f"inbox/{k}": v for k, v in DOCS.items()})
    _docs(tmp_path, f"s3://{bucket}/inbox").inbox_files()
    key = document_id(DOCS["report-2.txt"], "report-2.txt")
    monkeypatch.setattr(ds, "scan_inbox", lambda *a, **k: pytest.fail("listed the inbox"))
    docs = _docs(tmp_path, f"s3://{bucket}/inbox")
    found = docs.locate(key)
    assert found.etag and docs.read(found) == DOCS["report-2.txt"]


def test_size_limit_is_checked_from_the_listing_before_reading(tmp_path, monkeypatch) -> None:
    from assets.ingestion import raw_documents
    from llmops.ingestion import DocumentError
    from llmops.ingestion.docstore import InboxFile
    from resources.ingestion import IngestionResource

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    big = b"x" * 3_000_000
    (inbox / "huge.txt").write_bytes(big)
    with pytest.raises(DocumentError, match="above the max_file_mb limit") as err:
        check_listed_size(InboxFile("huge.txt", "p", len(big), 0.0), max_bytes=1024 * 1024)
    assert err.value.code == "too_large"

    docs = _docs(tmp_path, str(inbox))
    key = next(iter(docs.inbox_files()))
    monkeypatch.setattr(InboxFile, "read_bytes",
                        lambda self: pytest.fail("a too-large file was read"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", [key])
        result = dg.materialize(
            [raw_documents], partition_key=key, instance=instance, raise_on_error=False,
            resources={"docs": docs, "ingestion": IngestionResource(max_file_mb=1.0),
                       "io_manager": dg.mem_io_manager},
        )
    assert not result.success
    (entry,) = docs.quarantine.entries()
    assert entry["code"] == "too_large" and entry["name"] == "huge.txt"
    assert entry["sha256"] == hashlib.sha256(big).hexdigest() and entry["status"] == "open"


def _index_worker(args: tuple[str, str, int]) -> int:
    inbox, index_path, rounds = args
    index = InboxIndex(index_path)
    found = 0
    for _ in range(rounds):
        found += len(inbox_document_ids(inbox, index=index))
    return found


def test_index_is_safe_with_concurrent_processes(tmp_path) -> None:
    inbox = _local_inbox(tmp_path, 60)
    index_path = str(tmp_path / "shared" / "index.sqlite")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        counts = pool.map(_index_worker, [(str(inbox), index_path, 5)] * 4)
    assert counts == [300] * 4
    index = InboxIndex(index_path)
    assert len(index.known_hashes()) == 60
    assert index.document(document_id(b"document 5\n" * 3, "doc-5.txt"))["name"] == "doc-5.txt"


# --------------------------------------------------------------------- quarantine races


def _quarantine_worker(args: tuple[str, int, int]) -> None:
    path, worker, n = args
    q = Quarantine(path)
    for i in range(n):
        sha = hashlib.sha256(f"{worker}-{i}".encode()).hexdigest()
        q.record(name=f"w{worker}-{i}.pdf", sha256=sha, code="malformed", reason=f"r{i}")
        if i % 3 == 0:
            q.record_resolved(sha, f"w{worker}-{i}.pdf")


def _hammer(path: str, workers: int = 3, per: int = 8) -> None:
    threads = [threading.Thread(target=_quarantine_worker, args=((path, 100 + t, per),))
               for t in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pending = pool.map_async(_quarantine_worker, [(path, w, per) for w in range(workers)])
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pending.get(timeout=300)


def _check_hammered(q: Quarantine, writers: int = 6, per: int = 8) -> None:
    entries = q.entries()
    assert len(entries) == writers * per  # no record lost, none torn
    resolved = {e["name"] for e in entries if e["status"] == "resolved"}
    assert resolved == {e["name"] for e in entries if int(e["name"].split("-")[1][:-4]) % 3 == 0}
    assert len(q.open_entries()) == writers * per - len(resolved)


def test_quarantine_concurrent_writers_local(tmp_path) -> None:
    q = Quarantine(tmp_path / "q" / "quarantine.jsonl")
    _hammer(q.path)
    _check_hammered(q)


def test_quarantine_concurrent_writers_s3(s3, bucket) -> None:
    q = Quarantine(f"s3://{bucket}/quarantine")
    _hammer(q.path)
    _check_hammered(q)


def test_resolved_is_shown_and_a_new_rejection_reopens(tmp_path) -> None:
    from assets.structuring import _quarantine_table

    q = Quarantine(tmp_path / "quarantine.jsonl")
    q.record(name="scan.pdf", sha256="c" * 64, code="ocr_unavailable", reason="no ara pack")
    q.record(name="bad.pdf", sha256="d" * 64, code="malformed", reason="cut")
    q.record_resolved("c" * 64, "scan.pdf")
    assert {e["name"]: e["status"] for e in q.latest().values()} == {"scan.pdf": "resolved",
                                                                    "bad.pdf": "open"}
    table = _quarantine_table(q.entries())
    assert "| scan.pdf | resolved |" in table and "| bad.pdf | open |" in table
    q.record(name="scan.pdf", sha256="c" * 64, code="ocr_timeout", reason="slow")
    assert q.latest()["c" * 64]["status"] == "open" and set(q.open_entries()) == {"c" * 64,
                                                                                 "d" * 64}


def test_a_quarantined_document_that_succeeds_is_resolved(tmp_path) -> None:
    from assets.ingestion import extracted_pages, raw_documents
    from resources.ingestion import IngestionResource

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = b"A plain text report on water quality in the northern district.\n" * 4
    (inbox / "report.txt").write_bytes(data)
    docs = _docs(tmp_path, str(inbox))
    key = next(iter(docs.inbox_files()))
    sha = hashlib.sha256(data).hexdigest()
    docs.quarantine.record(name="report.txt", sha256=sha, code="ocr_timeout", reason="slow box")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("documents", [key])
        result = dg.materialize(
            [raw_documents, extracted_pages], partition_key=key, instance=instance,
            resources={"docs": docs, "ingestion": IngestionResource(ocr_languages="eng"),
                       "io_manager": dg.mem_io_manager},
        )
    assert result.success
    (entry,) = docs.quarantine.entries()
    assert entry["status"] == "resolved" and docs.quarantine.open_entries() == {}
    assert docs.quarantine.records()[-1]["run_id"] == result.run_id


def test_cli_quarantine_shows_open_and_resolved(tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    import pipelines.cli as cli

    docs = _docs(tmp_path, str(tmp_path))
    docs.quarantine.record(name="scan.pdf", sha256="c" * 64, code="ocr_timeout", reason="slow")
    docs.quarantine.record(name="bad.pdf", sha256="d" * 64, code="malformed", reason="cut")
    docs.quarantine.record_resolved("c" * 64, "scan.pdf")
    monkeypatch.setattr(cli, "_resource", lambda env, name: docs)
    result = CliRunner().invoke(cli.app, ["quarantine"])
    assert result.exit_code == 0
    assert "scan.pdf: resolved [ocr_timeout] slow" in result.output
    assert "bad.pdf: open [malformed] cut" in result.output
    result = CliRunner().invoke(cli.app, ["quarantine", "--json"])
    assert {e["name"]: e["status"] for e in json.loads(result.output)} == {
        "scan.pdf": "resolved", "bad.pdf": "open"}
