"""Where documents come from (an inbox), where their bytes are kept, and where rejects are logged.

* :class:`DocumentStore`: content-addressed and immutable (``<root>/ab/abcdef...``). ``put`` of
  the same bytes is a no-op, a stored object is never rewritten, so re-running ingestion can
  never lose or alter what an earlier run stored.
* :func:`scan_inbox` / :func:`inbox_document_ids`: list an inbox folder or object-store prefix
  through fsspec; hashes are cached by (path, size, mtime/ETag) so a sensor tick re-reads nothing
  that did not change.
* :class:`InboxIndex`: that cache made persistent (SQLite, WAL) plus ``doc_id -> path``, so
  locating one document is a lookup, not a re-hash of the whole inbox in every run process.
* :func:`removal_refused` / :class:`RemovalLog` / :func:`restore_documents`: a sync may not drop
  more than a share of the documents at once (an empty or mistyped listing looks like "everything
  was deleted"), what is dropped is logged, and a removal can be undone from the stored copies.
* :class:`Quarantine`: an append-only log of rejected documents and why, and of documents that
  later went through (resolved). Object stores get one object per record: no read-modify-write.

Object stores go through fsspec; for S3 the endpoint and credentials come from the environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... read by botocore itself), so the same URL works
against AWS, MinIO or a local moto server.

Local paths use the standard library; anything with ``://`` goes through fsspec (s3, gcs, ...).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from llmops.ingestion.detect import document_id_from_hash

_HASH_CHUNK = 1 << 20
_SKIP_PREFIXES = (".", "~$")  # hidden files, editor lock files
_SKIP_SUFFIXES = (".part", ".crdownload", ".tmp", ".swp")  # uploads still in flight


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root


def _local(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


def _sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DocumentStore:
    """Immutable, content-addressed raw bytes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = str(root).rstrip("/")
        self._remote = _is_url(self.root)
        if not self._remote:
            _local(self.root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DocumentStore({self.root!r})"

    def path_for(self, sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        if self._remote:
            return f"{self.root}/{sha256[:2]}/{sha256}"
        return str(_local(self.root) / sha256[:2] / sha256)

    def exists(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if self._remote:
            fs, p = _fs(path)
            return bool(fs.exists(p))
        return Path(path).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` under its hash and return the location; idempotent, never overwrites."""
        sha = _sha256_of(data)
        path = self.path_for(sha)
        if self.exists(sha):
            return path
        if self._remote:
            fs, p = _fs(path)
            tmp = f"{p}.tmp-{os.getpid()}-{threading.get_ident()}"
            with fs.open(tmp, "wb") as fh:
                fh.write(data)
            if fs.exists(p):  # a concurrent writer won; identical content by construction
                fs.rm(tmp)
            else:
                fs.mv(tmp, p)
            return path
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha[:8]}-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, target)  # atomic and fails if the target exists: no overwrite
            except FileExistsError:
                pass
            except OSError:  # filesystems without hard links
                if not target.exists():
                    os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return path

    def get(self, sha256: str) -> bytes:
        """The stored bytes; verifies the hash so silent corruption is caught, not ingested."""
        path = self.path_for(sha256)
        try:
            if self._remote:
                fs, p = _fs(path)
                with fs.open(p, "rb") as fh:
                    data = fh.read()
            else:
                data = Path(path).read_bytes()
        except FileNotFoundError as err:
            raise KeyError(f"document {sha256} is not in the store {self.root}") from err
        if _sha256_of(data) != sha256:
            raise OSError(f"stored document {path} is corrupt: its content hash changed")
        return data


# --------------------------------------------------------------------------- inbox


class InboxChanged(Exception):
    """The file's bytes no longer hash to the document id it was located by."""


@dataclass
class InboxFile:
    """A file seen in the inbox; ``sha256`` is filled by :func:`inbox_document_ids`."""

    name: str
    path: str
    size: int
    mtime: float | None
    sha256: str = ""
    etag: str | None = None
    # Local files: the inode change time, which a rewrite moves even when it restores the mtime.
    ctime: float | None = None

    @property
    def doc_id(self) -> str:
        if not self.sha256:
            raise ValueError(f"{self.name}: hash not computed yet")
        return document_id_from_hash(self.sha256, self.name)

    def read_bytes(self) -> bytes:
        if _is_url(self.path):
            fs, p = _fs(self.path)
            with fs.open(p, "rb") as fh:
                return fh.read()
        return _local(self.path).read_bytes()

    def read_verified(self) -> bytes:
        """The bytes, checked against the hash the file was located by (a rewrite that kept
        size and mtime, or one between listing and reading, must not pass as the old version)."""
        data = self.read_bytes()
        if self.sha256 and _sha256_of(data) != self.sha256:
            raise InboxChanged(f"{self.path} changed since it was listed: its content hash differs")
        return data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return None


def _skip(name: str) -> bool:
    return name.startswith(_SKIP_PREFIXES) or name.lower().endswith(_SKIP_SUFFIXES)


def scan_inbox(url: str, patterns: Iterable[str] = ("**/*",)) -> list[InboxFile]:
    """Files under ``url`` matching any of ``patterns`` (sorted by path; no hashing)."""
    if _is_url(url):
        fs, root = _fs(url)
        # fsspec caches listings per filesystem instance: another process's upload would stay
        # invisible to a long-lived sensor.
        fs.invalidate_cache(root)
        protocol = url.split("://", 1)[0]
        seen: dict[str, InboxFile] = {}
        for pattern in patterns:
            for p, info in fs.glob(f"{root.rstrip('/')}/{pattern}", detail=True).items():
                name = PurePosixPath(p).name
                if info.get("type") != "file" or _skip(name):
                    continue
                etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
                seen[p] = InboxFile(
                    name=name,
                    path=f"{protocol}://{p}",
                    size=int(info.get("size") or 0),
                    mtime=_mtime(info),
                    etag=str(etag) if etag else None,
                )
        return [seen[k] for k in sorted(seen)]
    root = _local(url)
    if not root.is_dir():
        raise FileNotFoundError(f"inbox {url} does not exist or is not a directory")
    files: dict[str, InboxFile] = {}
    for pattern in patterns:
        for p in root.glob(pattern):
            if not p.is_file() or _skip(p.name):
                continue
            st = p.stat()
            files[str(p)] = InboxFile(p.name, str(p), st.st_size, st.st_mtime,
                                      ctime=st.st_ctime)
    return [files[k] for k in sorted(files)]


def hash_file(file: InboxFile, cache: MutableMapping[Any, str] | None = None) -> str:
    """sha256 of an inbox file, reusing ``cache`` while (path, size, mtime/ETag) are unchanged."""
    key = (file.path, file.size, _stamp(file))
    if cache is not None and key in cache:
        return cache[key]
    digest = hashlib.sha256()
    if _is_url(file.path):
        fs, p = _fs(file.path)
        with fs.open(p, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    else:
        with _local(file.path).open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    sha = digest.hexdigest()
    if cache is not None:
        cache[key] = sha
    return sha


def inbox_document_ids(
    url: str,
    patterns: Iterable[str] = ("**/*",),
    cache: MutableMapping[Any, str] | None = None,
    index: InboxIndex | None = None,
) -> dict[str, InboxFile]:
    """Inbox content keyed by document id (the partition key); identical copies collapse.

    With an ``index``, only files whose (path, size, mtime/ETag) the index has not seen are read
    and hashed, and what was hashed is remembered for the next process."""
    files = scan_inbox(url, patterns)
    known = index.known_hashes() if index is not None else {}
    fresh: list[InboxFile] = []
    for file in files:
        sha = known.get((file.path, file.size, _stamp(file)))
        if sha is None:
            sha = hash_file(file, cache)
            fresh.append(file)
        file.sha256 = sha
    if index is not None and fresh:
        index.remember(fresh)
    out: dict[str, InboxFile] = {}
    for file in files:
        out.setdefault(file.doc_id, file)
    return out


def _stamp(file: InboxFile) -> str:
    """What says "unchanged" besides the size: the ETag on object stores, else mtime + ctime."""
    return file.etag or f"{file.mtime!r}/{file.ctime!r}"


def stat_file(path: str) -> InboxFile | None:
    """The current listing entry of one file (a stat / HEAD request), or None if it is gone."""
    name = PurePosixPath(path).name
    if _is_url(path):
        fs, p = _fs(path)
        fs.invalidate_cache(p)
        try:
            info = fs.info(p)
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
        return InboxFile(name, path, int(info.get("size") or 0), _mtime(info),
                         etag=str(etag) if etag else None)
    try:
        st = _local(path).stat()
    except FileNotFoundError:
        return None
    return InboxFile(name, path, st.st_size, st.st_mtime, ctime=st.st_ctime)


class InboxIndex:
    """Persistent hash cache and ``doc_id -> path`` map of inbox files (SQLite in WAL mode).

    Every ingestion run is a fresh process: without this, each one re-listed and re-hashed the
    whole inbox to find its own file (quadratic over a backfill). Rows are keyed by the file's
    path, size and mtime (ETag on object stores), so a changed file is hashed again. WAL plus a
    busy timeout lets the sensor and parallel run processes read and write it at once. The
    index always lives on a local disk (the data root), also for an ``s3://`` inbox.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as con, con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                " stamp TEXT NOT NULL, sha256 TEXT NOT NULL)"
            )
            # One row per document version ever seen, never deleted: what a removal log and a
            # restore need to know about a document that has left the inbox.
            con.execute(
                "CREATE TABLE IF NOT EXISTS documents (doc_id TEXT PRIMARY KEY, sha256 TEXT NOT"
                " NULL, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,"
                " stamp TEXT NOT NULL, seen_at TEXT NOT NULL)"
            )

    def __repr__(self) -> str:
        return f"InboxIndex({str(self.path)!r})"

    def _connect(self) -> Any:
        import sqlite3

        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA busy_timeout=60000")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def known_hashes(self) -> dict[tuple[str, int, str], str]:
        with contextlib.closing(self._connect()) as con:
            rows = con.execute("SELECT path, size, stamp, sha256 FROM files").fetchall()
        return {(p, size, stamp): sha for p, size, stamp, sha in rows}

    def remember(self, files: Iterable[InboxFile]) -> None:
        """Record hashed files (one transaction)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = [(f.path, f.size, _stamp(f), f.sha256, f.doc_id, f.name) for f in files]
        with contextlib.closing(self._connect()) as con, con:
            con.executemany(
                "INSERT OR REPLACE INTO files (path, size, stamp, sha256) VALUES (?, ?, ?, ?)",
                [r[:4] for r in rows],
            )
            con.executemany(
                "INSERT OR REPLACE INTO documents (doc_id, sha256, name, path, size, stamp,"
                " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(d, sha, name, p, size, stamp, now) for p, size, stamp, sha, d, name in rows],
            )

    def document(self, doc_id: str) -> dict[str, Any] | None:
        """What the index knows of a document version (also after it left the inbox)."""
        with contextlib.closing(self._connect()) as con:
            row = con.execute(
                "SELECT doc_id, sha256, name, path, size, stamp FROM documents WHERE doc_id = ?",
                (doc_id,),
            ).fetchone()
        if row is None:
            return None
        return dict(zip(("doc_id", "sha256", "name", "path", "size", "stamp"), row, strict=True))


def _under(path: str, url: str) -> bool:
    if _is_url(url):
        protocol = url.split("://", 1)[0]
        _, root = _fs(url)
        prefix = f"{protocol}://{root.rstrip('/')}/"
    else:
        prefix = str(_local(url)).rstrip("/") + "/"
    return path.startswith(prefix)


def locate_document(
    url: str,
    doc_id: str,
    index: InboxIndex,
    patterns: Iterable[str] = ("**/*",),
) -> InboxFile | None:
    """The inbox file of a document version, or None if that version is no longer there.

    An index hit costs one stat of that file, whatever the inbox size; only an unknown or
    changed file falls back to one listing (which updates the index). The returned file's hash
    comes from the index: read it with :meth:`InboxFile.read_verified`."""
    row = index.document(doc_id)
    if row is not None and _under(row["path"], url):
        file = stat_file(row["path"])
        if file is not None and file.size == row["size"] and _stamp(file) == row["stamp"]:
            file.sha256 = row["sha256"]
            return file
    return inbox_document_ids(url, patterns, index=index).get(doc_id)


def check_listed_size(file: InboxFile, max_bytes: int) -> None:
    """Reject from the listing's size, before the whole file is read into memory."""
    from llmops.ingestion.errors import DocumentError

    if file.size == 0:
        raise DocumentError(file.name, "file is empty (0 bytes)", "empty")
    if file.size > max_bytes:
        raise DocumentError(
            file.name,
            f"file is {file.size / 2**20:.1f} MB, above the max_file_mb limit of "
            f"{max_bytes / 2**20:g} MB (not read)",
            "too_large",
        )


# --------------------------------------------------------------------------- removal guard


def removal_refused(existing: int, removing: int, max_share: float) -> bool:
    """True when one sync would drop more than ``max_share`` of the known documents.

    A typo'd prefix or an outage that lists nothing looks exactly like "every file was
    deleted"; the caller asks for an explicit override instead of acting on it."""
    return existing > 0 and removing > max_share * existing


def removal_report(inbox: str, removing: list[str], existing: int, max_share: float,
                   sample: int = 5) -> str:
    names = ", ".join(removing[:sample]) + (", ..." if len(removing) > sample else "")
    return (
        f"refusing to drop {len(removing)} of {existing} documents "
        f"({len(removing) / existing:.0%} > max_removal_share {max_share:.0%}): they are missing "
        f"from the listing of {inbox} ({names}). If the inbox location is right and they were "
        "really deleted, sync again with the mass-removal override (CLI --allow-mass-removal, "
        "resource allow_mass_removal: true)."
    )


class RemovalLog:
    """Append-only JSON-lines log of the document versions each sync dropped, for an undo."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _local(str(path))

    def __repr__(self) -> str:
        return f"RemovalLog({str(self.path)!r})"

    def record(self, inbox: str, documents: list[dict[str, Any]], forced: bool) -> dict[str, Any]:
        entry = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "inbox": inbox,
            "forced": forced,
            "documents": documents,
        }
        _append_line(self.path, json.dumps(entry, ensure_ascii=False))
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return _read_lines(self.path.read_text(encoding="utf-8")) if self.path.exists() else []


def restore_documents(documents: list[dict[str, Any]], store: DocumentStore) -> dict[str, str]:
    """Put removed documents back at their inbox path from their stored copies.

    ``documents`` are removal-log records (doc_id, sha256, path). Returns doc_id -> outcome:
    ``restored``, ``present`` (the same bytes are there), ``conflict`` (other bytes are at the
    path: never overwritten) or ``no stored copy`` (never ingested, nothing to restore from)."""
    out: dict[str, str] = {}
    for doc in documents:
        doc_id, sha, path = doc["doc_id"], doc.get("sha256"), doc.get("path")
        if not sha or not path:
            out[doc_id] = "unknown document (not in the inbox index)"
            continue
        current = stat_file(path)
        if current is not None:
            out[doc_id] = "present" if hash_file(current) == sha else "conflict"
            continue
        if not store.exists(sha):
            out[doc_id] = "no stored copy"
            continue
        data = store.get(sha)
        if _is_url(path):
            fs, p = _fs(path)
            fs.pipe_file(p, data)
        else:
            target = _local(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".restore-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        out[doc_id] = "restored"
    return out


# --------------------------------------------------------------------------- quarantine


def _append_line(target: Path, line: str) -> None:
    """Append one whole line with O_APPEND: concurrent processes never interleave bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data = line.rstrip("\n") + "\n"
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # a writer that died mid-line left no newline: start a fresh line
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = "\n" + data
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)


def _read_lines(raw: str) -> list[dict[str, Any]]:
    out = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn line (crash mid-write) is skipped
            continue
    return out


class Quarantine:
    """Append-only log of rejected documents, and of rejected documents that later went through.

    Locally one JSON line per record (``O_APPEND``). On an object store (``s3://...``), which
    cannot append, every record is its own object ``<path>.d/<sha256>/<time_ns>-<uuid>.json``:
    concurrent writers never overwrite each other (the old read-modify-write lost records); a
    single-object log at ``path`` left by that version is still read. Records are never edited;
    a rejection is shown as ``resolved`` once a later ``resolved`` record for its hash exists.
    """

    FIELDS = ("name", "sha256", "code", "reason", "timestamp", "run_id", "status")
    RESOLVED = "resolved"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path).rstrip("/")

    def __repr__(self) -> str:
        return f"Quarantine({self.path!r})"

    def record(
        self,
        name: str,
        sha256: str,
        code: str,
        reason: str,
        run_id: str | None = None,
        timestamp: str | None = None,
    ) -> dict[str, Any]:
        """Log a rejection."""
        return self._append({
            "kind": "rejected", "name": name, "sha256": sha256, "code": code, "reason": reason,
            "timestamp": timestamp or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
        })

    def record_resolved(self, sha256: str, name: str = "", run_id: str | None = None
                        ) -> dict[str, Any]:
        """Log that a quarantined document version was ingested after all (e.g. a retry after
        installing an OCR language pack)."""
        return self._append({
            "kind": self.RESOLVED, "name": name, "sha256": sha256, "code": self.RESOLVED,
            "reason": "ingested after all",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
        })

    def _append(self, entry: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(entry, ensure_ascii=False)
        if _is_url(self.path):
            import uuid

            fs, p = _fs(self.path)
            key = f"{p}.d/{entry['sha256'] or '_'}/{time.time_ns():020d}-{uuid.uuid4().hex}.json"
            fs.pipe_file(key, line.encode("utf-8"))
        else:
            _append_line(_local(self.path), line)
        return entry

    def records(self) -> list[dict[str, Any]]:
        """Every record (rejections and resolutions), oldest first."""
        if not _is_url(self.path):
            target = _local(self.path)
            return _read_lines(target.read_text(encoding="utf-8")) if target.exists() else []
        fs, p = _fs(self.path)
        fs.invalidate_cache(p)
        fs.invalidate_cache(f"{p}.d")
        out: list[dict[str, Any]] = []
        if fs.isfile(p):  # a log written as one object by an older version
            out += _read_lines(fs.cat_file(p).decode("utf-8"))
        keys = [k for k in fs.find(f"{p}.d") if k.endswith(".json")]
        keys.sort(key=lambda k: (PurePosixPath(k).name, k))  # time_ns first: oldest first
        for key in keys:
            out += _read_lines(fs.cat_file(key).decode("utf-8"))
        return out

    def entries(self) -> list[dict[str, Any]]:
        """Every rejection, oldest first, with ``status`` ``open`` or ``resolved``."""
        out: list[dict[str, Any]] = []
        for rec in self.records():
            if rec.get("kind") == self.RESOLVED:
                for prior in out:
                    if prior["sha256"] == rec["sha256"]:
                        prior["status"] = self.RESOLVED
                        prior["resolved_at"] = rec.get("timestamp")
                continue
            out.append({**rec, "status": "open"})
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """Most recent rejection per document hash, with its status."""
        return {e["sha256"]: e for e in self.entries()}

    def open_entries(self) -> dict[str, dict[str, Any]]:
        """Most recent rejection per document hash, for documents not ingested since."""
        return {sha: e for sha, e in self.latest().items() if e["status"] == "open"}
