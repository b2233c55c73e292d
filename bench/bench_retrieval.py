"""Retrieval per mode: p50/p95 latency at 100k rows and hit@5 / MRR on both question sets.

1. Latency: a synthetic 100k-row LanceDB table (unit vectors, Zipfian word text) with the ANN and
   FTS indexes the pipeline builds; vector, fts and hybrid queries interleaved per query so machine
   noise hits every mode alike. The figure of merit is hybrid p95 / max(vector p95, fts p95)
   (goal <= 1.3x): hybrid runs both parts, so it can never beat the slower one.
2. Quality: hit@5 / MRR per mode on configs/retrieval_eval.yaml and on the held-out
   configs/retrieval_heldout.yaml, over the corpus documents both sets name (skipped without
   ../shared/corpus), indexed exactly as the pipeline indexes them: llmops.ingestion's
   extract_document (tables as markdown, OCR where needed), chunk_pages at the configured
   sizes, the packaged MiniLM (retrieval_eval.corpus_store). Neither set chose any setting.

Both parts also time and score LanceDB's own hybrid query (``query_type="hybrid"``, its default
RRFReranker, called as its documentation shows) as ``lancedb_hybrid``: the alternative to the
project's fusion.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import percentile  # noqa: E402

from llmops.vectorstore import _RESULT_COLUMNS, SEARCH_MODES, VectorStore  # noqa: E402

MODES = (*SEARCH_MODES, "lancedb_hybrid")


class WithLanceHybrid:
    """The store, plus mode "lancedb_hybrid": LanceDB's built-in hybrid query on the same table
    (same Arabic-stemmed FTS column, same query text treatment)."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def search(self, text: str, vector, k: int = 5, mode: str = "hybrid") -> list[dict]:
        if mode != "lancedb_hybrid":
            return self._store.search(text, vector, k=k, mode=mode)
        from llmops.arabic import search_form

        query = (
            self._store._table.search(
                query_type="hybrid", vector_column_name="vector", fts_columns="search_text"
            )
            .vector(vector)
            .text(search_form(text))
            .limit(k)
            .select(_RESULT_COLUMNS)
        )
        rows = query.to_list()
        for rank, row in enumerate(rows, start=1):
            row["rank"] = rank
        return rows


def synthetic_table(n: int, dim: int, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    """``n`` rows of random unit vectors and 30-word Zipfian texts (a realistic FTS posting mix)."""
    vocab = np.array([f"w{i}" for i in range(20_000)])
    ranks = np.minimum(rng.zipf(1.2, size=(n, 30)) - 1, len(vocab) - 1)
    texts = [" ".join(vocab[r]) for r in ranks]
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    columns = {
        "chunk_id": pa.array([f"{i:016x}" for i in range(n)]),
        "doc_id": pa.array([f"doc{i // 50}" for i in range(n)]),
        "text": pa.array(texts),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        "language": pa.array(["en"] * n),
        "page_start": pa.array(np.ones(n, dtype=np.int32)),
        "page_end": pa.array(np.ones(n, dtype=np.int32)),
        "heading": pa.array([""] * n),
        "entities": pa.array(["{}"] * n),
        "model_id": pa.array(["synthetic@0"] * n),
        "embedded_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
    }
    return pa.table(columns), vectors  # the store adds search_text and casts to its schema


def synthetic_queries(
    table: pa.Table, vectors: np.ndarray, n_queries: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray, int]]:
    """(last 4 words, noisy unit vector, row) of ``n_queries`` distinct rows: both parts of a
    hybrid query point at the same source row."""
    texts = table.column("text").to_pylist()
    queries = []
    for target in rng.choice(len(texts), size=n_queries, replace=False):
        noisy = vectors[target] + rng.normal(scale=0.03, size=vectors.shape[1]).astype(np.float32)
        words = texts[target].split()
        queries.append((" ".join(words[-4:]), noisy / np.linalg.norm(noisy), int(target)))
    return queries


def bench_latency(n: int, n_queries: int, dim: int = 384) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(7)
    table, vectors = synthetic_table(n, dim, rng)
    queries = synthetic_queries(table, vectors, n_queries, rng)
    with tempfile.TemporaryDirectory() as tmp:
        store = WithLanceHybrid(VectorStore(tmp, dim=dim))
        started = time.perf_counter()
        store.upsert(table)
        report = store.ensure_indexes(min_rows_for_ann=min(n, 5000))
        build_s = time.perf_counter() - started
        for text, vector, _ in queries[:5]:  # warm caches and the thread pool
            for mode in MODES:
                store.search(text, vector, k=5, mode=mode)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        found = dict.fromkeys(MODES, 0)
        for text, vector, row in queries:
            target = f"{row:016x}"
            for mode in MODES:
                started = time.perf_counter()
                hits = store.search(text, vector, k=5, mode=mode)
                times[mode].append((time.perf_counter() - started) * 1000)
                found[mode] += target in {h["chunk_id"] for h in hits}
    out = {m: (percentile(t, 0.5), percentile(t, 0.95)) for m, t in times.items()}
    print(
        f"[latency] {n} rows, dim {dim}, {n_queries} queries interleaved, k=5 "
        f"(load + indexes {build_s:.1f}s; ANN {report['ann']})"
    )
    print("  mode             p50 ms   p95 ms   source row in top 5")
    for mode, (p50, p95) in out.items():
        print(f"  {mode:<15}{p50:8.1f} {p95:8.1f}   {found[mode] / len(queries):.2f}")
    slower = max(out["vector"][1], out["fts"][1])
    for mode in ("hybrid", "lancedb_hybrid"):
        print(
            f"  {mode} p95 / slower part p95: {out[mode][1] / slower:.2f}x (goal <= 1.3x); "
            f"p50 ratio {out[mode][0] / max(out['vector'][0], out['fts'][0]):.2f}x"
        )
    return out


def bench_quality() -> None:
    from llmops.embedding import Embedder
    from llmops.retrieval_eval import (
        corpus_store,
        evaluate_retrieval,
        format_table,
        load_labelled,
    )

    sets = {
        "labelled": load_labelled(),
        "held-out": load_labelled(ROOT / "configs" / "retrieval_heldout.yaml"),
    }
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = corpus_store([q for qs in sets.values() for q in qs], embedder, tmp)
        if store is None:
            print("[quality] skipped: ../shared/corpus not found")
            return
        store = WithLanceHybrid(store)
        for name, queries in sets.items():
            results = evaluate_retrieval(store, embedder, queries, k=5, modes=MODES, details=True)
            print(f"[quality] {name}: {len(queries)} questions, {store.count()} chunks")
            print(format_table(results))
            for mode, m in results.items():
                misses = [q["id"] for q in m["per_query"] if q["rank"] is None]
                print(f"  {mode} misses: {', '.join(misses) or 'none'}")
            print(f"  unresolved labels: {', '.join(m['unresolved_ids']) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k rows, 40 queries")
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args()
    bench_latency(n=10_000 if args.quick else 100_000, n_queries=40 if args.quick else 150)
    if not args.latency_only:
        bench_quality()


if __name__ == "__main__":
    main()
