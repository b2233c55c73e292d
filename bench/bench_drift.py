"""Drift tests: time at 1k and 10k texts per side, and the cost of an incremental re-run.

1. ``detect_drift`` on two samples of 1,000 and 10,000 texts each (lines of the corpus PDFs and
   the bundled sources, varied by sentence windows), with the embeddings precomputed ("tests
   only") and with the packaged MiniLM embedding them ("embedding included"). The embedding
   test uses a seeded subsample of at most ``Thresholds.max_embedded`` texts per side.
2. The drift sensor's re-run after one new document: a knowledge base of 100 documents is tested
   once from scratch (every chunk embedded), then one document is added and the test re-runs
   with the vectors the knowledge base already stores (``CachedEmbedder``): only the new
   document's chunks are embedded. Printed as re-run time / full-run time (aim <= 5%).

    python bench/bench_drift.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import best_of  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def text_pool(n: int) -> list[str]:
    """``n`` distinct English texts of 1-3 sentences from the corpus PDFs and bundled sources."""
    from tests.training_data import corpus_texts

    sentences: list[str] = []
    for text in corpus_texts(max_pdf_pages=80):
        flat = " ".join(text.split())
        sentences += [s for s in re.split(r"(?<=[.!?])\s+", flat) if 30 <= len(s) <= 300]
    sentences = list(dict.fromkeys(sentences))
    out: list[str] = []
    width = 1
    while len(out) < n:
        out += [" ".join(sentences[i : i + width]) for i in range(len(sentences) - width + 1)]
        width += 1
    return list(dict.fromkeys(out))[:n]


def scale(sizes: list[int], embedder) -> None:
    import numpy as np

    from llmops.drift import CachedEmbedder, detect_drift

    print(f"{'texts/side':>10}{'tests only':>12}{'embedding included':>20}{'embedded':>10}")
    for n in sizes:
        pool = text_pool(2 * n)
        reference, current = pool[:n], pool[n:]
        rng = np.random.default_rng(0)
        precomputed = CachedEmbedder(embedder.encode,
                                     known={t: rng.normal(size=embedder.dim) for t in pool})
        embed = CachedEmbedder(embedder.encode)
        only = best_of(lambda r=reference, c=current, e=precomputed: detect_drift(r, c, embed=e))
        full = best_of(lambda r=reference, c=current, e=embed: detect_drift(r, c, embed=e))
        print(f"{n:>10}{only:>11.2f}s{full:>19.2f}s{embed.encoded:>10}")


def incremental(embedder, docs: int = 100, chunks_per_doc: int = 10) -> None:
    from llmops.drift import CachedEmbedder, detect_drift

    pool = text_pool((docs + 1) * chunks_per_doc)
    corpus = [pool[d * chunks_per_doc : (d + 1) * chunks_per_doc] for d in range(docs + 1)]
    trained = docs * 9 // 10  # the champion's documents; the rest arrived since

    def window(n_docs: int) -> tuple[list[str], list[str]]:
        ref = [t for doc in corpus[:trained] for t in doc]
        cur = [t for doc in corpus[trained:n_docs] for t in doc]
        return ref, cur

    cold = CachedEmbedder(embedder.encode)
    full = best_of(lambda: detect_drift(*window(docs), embed=cold))
    stored = dict(cold.known)  # what the knowledge base holds after indexing the 100 documents
    warm = CachedEmbedder(embedder.encode, known=stored)
    again = best_of(lambda: detect_drift(*window(docs + 1), embed=warm))
    print(f"\nincremental re-run, {docs} documents x {chunks_per_doc} chunks + 1 new document:")
    print(f"  full run {full:.2f}s ({cold.encoded} texts embedded), re-run {again:.2f}s "
          f"({warm.encoded} embedded): {again / full:.1%} of a full run (aim <= 5%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k texts only, 40 documents")
    args = parser.parse_args()
    from llmops.embedding import Embedder

    embedder = Embedder(None)
    scale([1000] if args.quick else [1000, 10000], embedder)
    incremental(embedder, docs=40 if args.quick else 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
