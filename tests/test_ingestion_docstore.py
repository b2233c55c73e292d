"""Immutable document store, inbox scanning with a hash cache, quarantine log."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from llmops.ingestion import document_id
from llmops.ingestion.docstore import (
    DocumentStore,
    Quarantine,
    hash_file,
    inbox_document_ids,
    scan_inbox,
)


def test_store_is_content_addressed_idempotent_and_immutable(tmp_path):
    store = DocumentStore(tmp_path / "docs")
    data = b"%PDF-1.4 some bytes"
    sha = hashlib.sha256(data).hexdigest()
    assert not store.exists(sha)
    path = store.put(data)
    assert path.endswith(f"{sha[:2]}/{sha}") and store.exists(sha)
    mtime = os.stat(path).st_mtime_ns
    assert store.put(data) == path and os.stat(path).st_mtime_ns == mtime  # no rewrite
    assert store.get(sha) == data
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only file
    with pytest.raises(KeyError, match="not in the store"):
        store.get("0" * 64)
    with pytest.raises(ValueError):
        store.path_for("../etc/passwd")


def test_store_detects_corruption(tmp_path):
    store = DocumentStore(tmp_path)
    path = store.put(b"original")
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(b"tampered")
    with pytest.raises(OSError, match="corrupt"):
        store.get(hashlib.sha256(b"original").hexdigest())


def test_concurrent_puts_of_the_same_bytes(tmp_path):
    store = DocumentStore(tmp_path)
    data = os.urandom(200_000)
    paths: list[str] = []
    threads = [threading.Thread(target=lambda: paths.append(store.put(data))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and store.get(hashlib.sha256(data).hexdigest()) == data
    leftovers = [p for p in (tmp_path).rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []


def test_fsspec_url_store(tmp_path):
    store = DocumentStore("memory://llmops-test-store")
    path = store.put(b"remote bytes")
    assert path.startswith("memory://") and store.put(b"remote bytes") == path
    assert store.get(hashlib.sha256(b"remote bytes").hexdigest()) == b"remote bytes"


def test_scan_inbox_and_hash_cache(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "a.pdf").write_bytes(b"aaa")
    (inbox / "sub" / "b.txt").write_bytes(b"bbb")
    (inbox / ".hidden").write_bytes(b"x")
    (inbox / "upload.pdf.part").write_bytes(b"x")
    files = scan_inbox(str(inbox), ["**/*"])
    assert [f.name for f in files] == ["a.pdf", "b.txt"]
    assert files[0].size == 3 and files[0].mtime is not None
    assert [f.name for f in scan_inbox(str(inbox), ["*.pdf"])] == ["a.pdf"]

    cache: dict = {}
    ids = inbox_document_ids(str(inbox), ["**/*"], cache=cache)
    assert set(ids) == {document_id(b"aaa", "a.pdf"), document_id(b"bbb", "b.txt")}
    assert ids[document_id(b"aaa", "a.pdf")].read_bytes() == b"aaa"
    # a cached entry is trusted while (path, size, mtime) hold: prove it by poisoning it
    key = next(k for k in cache if k[0].endswith("a.pdf"))
    cache[key] = "f" * 64
    assert hash_file(files[0], cache) == "f" * 64
    # a changed file (new size/mtime) is hashed again: a new document id
    (inbox / "a.pdf").write_bytes(b"aaaa")
    ids2 = inbox_document_ids(str(inbox), ["**/*"], cache=cache)
    assert document_id(b"aaaa", "a.pdf") in ids2


def test_scan_inbox_over_fsspec_memory():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/inbox-test/x.pdf", b"xx")
    fs.pipe("/inbox-test/deep/y.txt", b"yy")
    files = scan_inbox("memory://inbox-test", ["**/*"])
    assert sorted(f.name for f in files) == ["x.pdf", "y.txt"]
    ids = inbox_document_ids("memory://inbox-test", ["**/*"])
    assert ids[document_id(b"xx", "x.pdf")].read_bytes() == b"xx"


def test_missing_inbox_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="inbox"):
        scan_inbox(str(tmp_path / "nope"))


def test_quarantine_appends_and_survives_a_torn_line(tmp_path):
    q = Quarantine(tmp_path / "q" / "quarantine.jsonl")
    assert q.entries() == []
    q.record(name="bad.pdf", sha256="a" * 64, code="malformed", reason="cut", run_id="r1")
    q.record(name="bad.pdf", sha256="a" * 64, code="malformed", reason="cut", run_id="r2")
    with open(q.path, "a", encoding="utf-8") as fh:
        fh.write('{"name": "half')  # a writer died mid-line
    q.record(name="x.docx", sha256="b" * 64, code="unsupported", reason="nope")
    entries = q.entries()
    assert [e["run_id"] for e in entries] == ["r1", "r2", None]  # the torn line alone is lost
    assert set(Quarantine.FIELDS) <= set(entries[0])
    assert q.latest()["a" * 64]["run_id"] == "r2"
    with open(q.path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert json.loads(lines[0])["reason"] == "cut" and json.loads(lines[-1])["name"] == "x.docx"


def test_object_store_quarantine_is_one_object_per_record_and_reads_the_old_log():
    import fsspec

    fs = fsspec.filesystem("memory")
    # a log written by the old read-modify-write version: one object holding JSON lines
    fs.pipe("/q-legacy/quarantine", b'{"name": "old.pdf", "sha256": "' + b"e" * 64
            + b'", "code": "malformed", "reason": "cut", "timestamp": "t", "run_id": null}\n')
    q = Quarantine("memory://q-legacy/quarantine")
    q.record(name="new.pdf", sha256="f" * 64, code="empty", reason="0 bytes")
    q.record_resolved("e" * 64, "old.pdf")
    assert [(e["name"], e["status"]) for e in q.entries()] == [("old.pdf", "resolved"),
                                                              ("new.pdf", "open")]
    assert len([p for p in fs.find("/q-legacy/quarantine.d/") if p.endswith(".json")]) == 2
    assert set(q.open_entries()) == {"f" * 64}
