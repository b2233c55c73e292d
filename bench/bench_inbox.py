"""Locating one document in inboxes of 100 and 1,000 files: persistent index vs full rescan.

Every ingestion run is its own process, so before the persistent index it found its file by
listing and hashing the whole inbox (an empty in-memory cache): a backfill of N documents read
the inbox N times. Now ``locate`` is one SQLite lookup, one stat (a HEAD request on S3) and a
read of that file, verified against its hash. Both are measured here in the same run, on a local
folder and on a local S3 server (moto, endpoint from the environment as in production). The
locate time must not grow with the inbox; the rescan grows linearly.

    python bench/bench_inbox.py [--quick] [--no-s3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(inboxes: dict[int, tuple[str, list[str]]], work: Path, rescans: int, lookups: int
            ) -> dict[int, dict[str, float]]:
    """Rescan and locate times per inbox size; sizes alternate round by round so a change in
    the machine's load (it is shared) hits them alike."""
    from llmops.ingestion.docstore import InboxIndex, inbox_document_ids, locate_document

    rng = random.Random(0)
    out: dict[int, dict[str, float]] = {}
    for n, (inbox, _) in inboxes.items():
        started = time.perf_counter()
        inbox_document_ids(inbox, index=InboxIndex(work / f"index-{n}.sqlite"))  # the sync
        out[n] = {"index_build_ms": (time.perf_counter() - started) * 1000}

    def rescan(n: int) -> None:  # what each run process did before: list + hash all, pick one
        inbox, keys = inboxes[n]
        inbox_document_ids(inbox, cache={})[rng.choice(keys)].read_bytes()

    def locate(n: int) -> None:  # a fresh run process: new index handle, lookup + stat + verify
        inbox, keys = inboxes[n]
        found = locate_document(inbox, rng.choice(keys), InboxIndex(work / f"index-{n}.sqlite"))
        assert found is not None
        found.read_verified()

    for name, fn, repeat in (("rescan_ms", rescan, rescans), ("locate_ms", locate, lookups)):
        times: dict[int, list[float]] = {n: [] for n in inboxes}
        for _ in range(repeat):
            for n in inboxes:
                times[n].append(_timed(lambda n=n, fn=fn: fn(n), 1))
        for n in inboxes:
            out[n][name] = statistics.median(times[n])
    return out


def local_inboxes(sizes: list[int], file_kb: int, work: Path) -> dict[int, tuple[str, list[str]]]:
    from llmops.ingestion import document_id

    out = {}
    for n in sizes:
        inbox = work / f"inbox-{n}"
        inbox.mkdir()
        keys = []
        for i in range(n):
            data = os.urandom(file_kb * 1024)
            (inbox / f"doc-{i:05d}.pdf").write_bytes(data)
            keys.append(document_id(data, f"doc-{i:05d}.pdf"))
        out[n] = (str(inbox), keys)
    return out


def s3_inboxes(sizes: list[int], file_kb: int, endpoint: str, bucket: str
               ) -> dict[int, tuple[str, list[str]]]:
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from llmops.ingestion import document_id

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = {}
    for n in sizes:
        blobs = {f"inbox-{n}/doc-{i:05d}.pdf": os.urandom(file_kb * 1024) for i in range(n)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                          blobs.items()))
        keys = [document_id(d, Path(k).name) for k, d in blobs.items()]
        out[n] = (f"s3://{bucket}/inbox-{n}", keys)
    return out


def report(label: str, results: dict[int, dict[str, float]]) -> None:
    print(f"\n{label}")
    print(f"{'files':>6} {'full rescan ms':>15} {'index build ms':>15} {'locate ms':>10} "
          f"{'rescan/locate':>14}")
    for n, r in results.items():
        print(f"{n:>6} {r['rescan_ms']:>15.1f} {r['index_build_ms']:>15.1f} "
              f"{r['locate_ms']:>10.2f} {r['rescan_ms'] / r['locate_ms']:>13.0f}x")
    small, large = min(results), max(results)
    growth_locate = results[large]["locate_ms"] / results[small]["locate_ms"]
    growth_rescan = results[large]["rescan_ms"] / results[small]["rescan_ms"]
    print(f"growth {small} -> {large} files: locate x{growth_locate:.2f} (flat is x1), "
          f"full rescan x{growth_rescan:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller files, fewer repeats")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) inboxes")
    args = parser.parse_args()
    sizes = [100, 1000]
    file_kb = 8 if args.quick else 64
    rescans, lookups = (2, 60) if args.quick else (3, 200)
    print(f"files of {file_kb} KB; median of {rescans} full rescans and {lookups} locates")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inboxes = local_inboxes(sizes, file_kb, work)
        report("local folder", measure(inboxes, work / "local", rescans, lookups))
        if args.no_s3:
            return
        from tests.servers import s3_server

        with s3_server("bench-inbox") as env:
            os.environ.update(env)
            inboxes = s3_inboxes(sizes, min(file_kb, 16), env["AWS_ENDPOINT_URL"], "bench-inbox")
            report("S3 (local moto server)", measure(inboxes, work / "s3", rescans, lookups))


if __name__ == "__main__":
    main()
