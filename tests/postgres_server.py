"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir, on a free port.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def available() -> bool:
    return bool(_pg_bin("initdb") and _pg_bin("pg_ctl"))


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a postgresql:// URL of a fresh server; stop it and remove its data on exit."""
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    # Not under pytest's tmp dirs: they are private to root and the server user must enter.
    base = Path(tempfile.mkdtemp(prefix="llmops-pg-"))
    data = base / "pgdata"
    if as_root:
        shutil.chown(base, "postgres")
    port = free_port()
    subprocess.run(
        [*prefix, _pg_bin("initdb"), "-D", str(data), "-U", "dagster", "-A", "trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
         "start"],
        check=True, capture_output=True,
    )
    try:
        url = f"postgresql://dagster@127.0.0.1:{port}/postgres"
        deadline = time.time() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run(
            [*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
