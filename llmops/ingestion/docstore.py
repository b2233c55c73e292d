"""Where documents come from (an inbox), where their bytes are kept, and where rejects are logged.

* :class:`DocumentStore`: content-addressed and immutable (``<root>/ab/abcdef...``). ``put`` of
  the same bytes is a no-op, a stored object is never rewritten, so re-running ingestion can
  never lose or alter what an earlier run stored.
* :func:`scan_inbox` / :func:`inbox_document_ids`: list an inbox folder or object-store prefix
  through fsspec; hashes are cached by (path, size, mtime) so a sensor tick re-reads nothing
  that did not change.
* :class:`Quarantine`: an append-only JSON-lines log of rejected documents and why.

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


@dataclass
class InboxFile:
    """A file seen in the inbox; ``sha256`` is filled by :func:`inbox_document_ids`."""

    name: str
    path: str
    size: int
    mtime: float | None
    sha256: str = ""
    etag: str | None = None

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
            files[str(p)] = InboxFile(p.name, str(p), st.st_size, st.st_mtime)
    return [files[k] for k in sorted(files)]


def hash_file(file: InboxFile, cache: MutableMapping[Any, str] | None = None) -> str:
    """sha256 of an inbox file, reusing ``cache`` while (path, size, mtime, etag) are unchanged."""
    key = (file.path, file.size, file.mtime, file.etag)
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
) -> dict[str, InboxFile]:
    """Inbox content keyed by document id (the partition key); identical copies collapse."""
    out: dict[str, InboxFile] = {}
    for file in scan_inbox(url, patterns):
        file.sha256 = hash_file(file, cache)
        out.setdefault(file.doc_id, file)
    return out


# --------------------------------------------------------------------------- quarantine


class Quarantine:
    """Append-only JSON-lines log of rejected documents (one line per rejection)."""

    FIELDS = ("name", "sha256", "code", "reason", "timestamp", "run_id")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._lock = threading.Lock()

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
        entry = {
            "name": name,
            "sha256": sha256,
            "code": code,
            "reason": reason,
            "timestamp": timestamp or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            if _is_url(self.path):
                fs, p = _fs(self.path)
                # object stores cannot append: read-modify-write (rejections are rare)
                old = fs.cat_file(p) if fs.exists(p) else b""
                if old and not old.endswith(b"\n"):
                    old += b"\n"
                with fs.open(p, "wb") as fh:
                    fh.write(old + line.encode("utf-8"))
            else:
                target = _local(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                # O_APPEND: concurrent step processes each add whole lines
                fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    # a writer that died mid-line left no newline: start a fresh line
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = "\n" + line
                    os.write(fd, line.encode("utf-8"))
                finally:
                    os.close(fd)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every rejection, oldest first; a torn last line (crash mid-write) is skipped."""
        if _is_url(self.path):
            fs, p = _fs(self.path)
            if not fs.exists(p):
                return []
            raw = fs.cat_file(p).decode("utf-8")
        else:
            target = _local(self.path)
            if not target.exists():
                return []
            raw = target.read_text(encoding="utf-8")
        out = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """Most recent rejection per document hash."""
        return {e["sha256"]: e for e in self.entries()}
