"""Structuring benchmark: embedding throughput, search latency, retrieval quality.

1. Chunks/s through ``embed_missing`` + ``Embedder`` vs calling ``SentenceTransformer.encode``
   directly on the same texts with the same batch size (interleaved runs, ratio; goal >= 0.9x).
2. Search latency p50/p95 for vector (flat, then ANN-indexed), FTS and hybrid at 100k rows
   (10k with --quick) of synthetic vectors and text, plus ANN self-recall against flat search.
3. hit@5 / MRR per search mode on configs/retrieval_eval.yaml over the sample PDFs, next to the
   hit@5 a random ranking would get on the same chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_retrieval import synthetic_queries, synthetic_table  # noqa: E402
from timing import percentile  # noqa: E402

from llmops.embedding import Embedder, embed_missing  # noqa: E402
from llmops.retrieval_eval import evaluate_retrieval, format_table, load_labelled  # noqa: E402
from llmops.vectorstore import VectorStore  # noqa: E402

CORPUS = Path(os.environ.get("LLMOPS_SHARED_CORPUS", ROOT.parent / "shared" / "corpus"))
MAX_TOKENS, OVERLAP_TOKENS = 200, 24  # configs/local.yaml structuring defaults


def _document_id(data: bytes, name: str) -> str:
    try:
        from llmops.ingestion import document_id

        return document_id(data, name)
    except ImportError:  # ingestion package not importable: same documented format
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(name).stem).strip("-").lower()
        return f"{slug}-{hashlib.sha256(data).hexdigest()[:12]}"


def _pdf_pages(names: set[str]) -> list[dict[str, Any]]:
    import pdfplumber

    pages = []
    for name in sorted(names):
        path = CORPUS / "pdfs" / name
        doc_id = _document_id(path.read_bytes(), name)
        with pdfplumber.open(path) as pdf:
            for number, page in enumerate(pdf.pages, start=1):
                pages.append(
                    {
                        "doc_id": doc_id,
                        "page_number": number,
                        "text": page.extract_text() or "",
                        "tables": [],
                        "language": "en",
                    }
                )
    return pages


def _paragraph_chunks(pages: list[dict[str, Any]], embedder: Embedder) -> list[dict[str, Any]]:
    """Used only when llmops.chunking is unavailable: greedy packing of lines up to the budget."""
    chunks: list[dict[str, Any]] = []
    for page in pages:
        buf: list[str] = []
        lines = [ln for ln in page["text"].splitlines() if ln.strip()]
        for line in [*lines, None]:
            candidate = " ".join([*buf, line]) if line is not None else None
            if line is not None and (not buf or embedder.count_tokens(candidate) <= MAX_TOKENS):
                buf.append(line)
                continue
            text = " ".join(buf)
            if text:
                cid = hashlib.sha256(f"{page['doc_id']}\x00{text}".encode()).hexdigest()[:16]
                chunks.append(
                    {
                        "chunk_id": cid,
                        "doc_id": page["doc_id"],
                        "text": text,
                        "page_start": page["page_number"],
                        "page_end": page["page_number"],
                        "language": "en",
                    }
                )
            buf = [line] if line is not None else []
    return chunks


def corpus_chunks(embedder: Embedder, names: set[str]) -> tuple[list[dict[str, Any]], str]:
    pages = _pdf_pages(names)
    try:
        from llmops.chunking import chunk_pages
    except ImportError:
        return _paragraph_chunks(pages, embedder), "paragraph fallback"
    chunks = chunk_pages(pages, embedder.count_tokens, MAX_TOKENS, OVERLAP_TOKENS)
    return [c.to_dict() for c in chunks], "llmops.chunking"


def bench_embedding(embedder: Embedder, chunks: list[dict[str, Any]], n: int, repeats: int) -> None:
    base_chunks = [c for c in chunks if c["text"].strip()]
    texts = [base_chunks[i % len(base_chunks)]["text"] for i in range(n)]
    items = [{"chunk_id": f"{i:016x}", "doc_id": "bench", "text": t} for i, t in enumerate(texts)]
    model = embedder.model
    model.encode(texts[:64], batch_size=embedder.batch_size)  # warm-up both paths
    ours, base = [], []
    for _ in range(repeats):  # interleaved: machine noise hits both sides alike
        started = time.perf_counter()
        model.encode(texts, batch_size=embedder.batch_size, show_progress_bar=False)
        base.append(n / (time.perf_counter() - started))
        started = time.perf_counter()
        rows, stats = embed_missing(items, embedder, set())
        ours.append(n / (time.perf_counter() - started))
        assert stats["embedded"] == n and len(rows) == n
    b, o = statistics.median(base), statistics.median(ours)
    mean_tokens = statistics.mean(embedder.count_tokens_batch(texts))
    print(
        f"[embedding] {n} corpus chunk texts (mean {mean_tokens:.0f} tokens), batch "
        f"{embedder.batch_size}, device {embedder.device}, {repeats} interleaved runs"
    )
    print(f"  SentenceTransformer.encode:  {b:8.1f} chunks/s (median)")
    print(f"  embed_missing + Embedder:    {o:8.1f} chunks/s (median)")
    print(f"  throughput ratio (ours / direct): {o / b:.2f}x  (goal >= 0.9x)")


def _latencies(store: VectorStore, queries: list[tuple[str, np.ndarray, int]], mode: str):
    times, top1 = [], 0
    for text, vector, target in queries:
        started = time.perf_counter()
        hits = store.search(text, vector, k=5, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
        top1 += bool(hits) and hits[0]["chunk_id"] == f"{target:016x}"
    return percentile(times, 0.5), percentile(times, 0.95), top1 / len(queries)


def bench_search(n: int, n_queries: int, dim: int = 384) -> None:
    rng = np.random.default_rng(7)
    table, vectors = synthetic_table(n, dim, rng)
    queries = synthetic_queries(table, vectors, n_queries, rng)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(tmp, dim=dim)
        started = time.perf_counter()
        store.upsert(table)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        store.ensure_indexes(min_rows_for_ann=n + 1)
        fts_s = time.perf_counter() - started
        print(
            f"[search] {n} rows, dim {dim}, {n_queries} queries, k=5 "
            f"(upsert {load_s:.1f}s, FTS index {fts_s:.1f}s)"
        )
        print("  mode               p50 ms   p95 ms   top1=source row")
        flat = _latencies(store, queries, "vector")
        print(f"  vector (flat)    {flat[0]:8.1f} {flat[1]:8.1f}   {flat[2]:.2f}")
        started = time.perf_counter()
        report = store.ensure_indexes(min_rows_for_ann=min(n, 5000))
        ann_s = time.perf_counter() - started
        ann = _latencies(store, queries, "vector")
        fts = _latencies(store, queries, "fts")
        hybrid = _latencies(store, queries, "hybrid")
        print(f"  vector (ANN)     {ann[0]:8.1f} {ann[1]:8.1f}   {ann[2]:.2f}")
        print(f"  fts (BM25)       {fts[0]:8.1f} {fts[1]:8.1f}   {fts[2]:.2f}")
        print(f"  hybrid (RRF)     {hybrid[0]:8.1f} {hybrid[1]:8.1f}   {hybrid[2]:.2f}")
        print(
            f"  ANN index: {report['ann']} in {ann_s:.1f}s; "
            f"p50 speed-up over flat {flat[0] / ann[0]:.2f}x, "
            f"recall of the source row {ann[2]:.2f} vs flat {flat[2]:.2f}"
        )


def bench_quality(embedder: Embedder, k: int = 5) -> None:
    # The questions over the shared corpus PDFs (the bundled-inbox ones are scored by the
    # retrieval_evaluation asset after `make demo`).
    labelled = [q for q in load_labelled() if (CORPUS / "pdfs" / q.doc).is_file()]
    names = {q.doc for q in labelled}
    if not labelled:
        print(f"[quality] skipped: sample PDFs not found under {CORPUS / 'pdfs'}")
        return
    chunks, how = corpus_chunks(embedder, names)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(tmp)
        rows, stats = embed_missing(chunks, embedder, set())
        store.upsert(rows)
        store.ensure_indexes()
        results = evaluate_retrieval(store, embedder, labelled, k=k, details=True)
        # chance level: a random ranking of the whole table, same relevant sets
        from llmops.retrieval_eval import relevant_chunk_ids

        relevant = relevant_chunk_ids(store, labelled)
        total = store.count()
        chance = [
            1 - math.comb(total - len(r), k) / math.comb(total, k) for r in relevant.values() if r
        ]
    print(
        f"[quality] {len(labelled)} labelled questions over {len(names)} PDFs, "
        f"{len(chunks)} chunks ({how}, max {MAX_TOKENS} tokens), "
        f"embedded in {stats['seconds']:.1f}s"
    )
    print(format_table(results, k))
    print(f"  random-ranking hit@{k} on the same chunks: {statistics.mean(chance):.3f}")
    print(f"  unresolved labels: {results['hybrid']['unresolved_ids'] or 'none'}")
    for mode, metrics in results.items():
        misses = [q["id"] for q in metrics["per_query"] if q["rank"] is None]
        print(f"  {mode} misses: {', '.join(misses) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k rows, fewer repeats")
    args = parser.parse_args()
    embedder = Embedder(batch_size=64)
    if (CORPUS / "pdfs").is_dir():
        names = {q.doc for q in load_labelled() if (CORPUS / "pdfs" / q.doc).is_file()}
        chunks, _ = corpus_chunks(embedder, names)
    else:  # still measurable without the corpus: prose-like synthetic chunks
        chunks = [
            {"text": f"Sentence {i} about flight control computers and sensors. " * 8}
            for i in range(64)
        ]
    bench_embedding(embedder, chunks, n=256 if args.quick else 512, repeats=2 if args.quick else 3)
    bench_search(n=10_000 if args.quick else 100_000, n_queries=40 if args.quick else 100)
    bench_quality(embedder)


if __name__ == "__main__":
    main()
