"""Knowledge-base refresh after one changed document in N vs a full rebuild.

What the `chunk_embeddings` asset runs (llmops.embedding.refresh_store: delete rows of documents
that left, embed only chunk ids without a vector from this model, rewrite entities of another
extractor version), on real LanceDB with the packaged MiniLM, over N short synthetic TXT documents
ingested and chunked by the pipeline's own code (extract_document, chunk_pages,
extract_entities). Three runs in one process, same store:
  1. full rebuild: an empty table, every chunk embedded;
  2. one document changed (a new version: new partition key, the old one removed);
  3. nothing changed (the floor: reading ids and versions only).
Prints seconds, chunks embedded and the ratio incremental / full (goal: about 1/N of the work).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["reservoir", "pipeline", "tariff", "meter", "drought", "pump", "filter", "leak",
          "billing", "valve"]  # fmt: skip


def document(i: int, version: int = 0) -> bytes:
    """A short report (3 paragraphs, ~120 words) unique to ``i`` and ``version``."""
    topic = TOPICS[i % len(TOPICS)]
    paragraphs = [
        f"Report {i} (revision {version}) on the {topic} programme of district {i * 7 % 97}.",
        f"In March 2024 the board approved ${1000 + i * 13:,} for {topic} works; "
        f"Ms. Jane Smith of the Water Authority said {40 + i % 50}% of the work is done.",
        f"Contact ops{i}@water.example.org before 1 June 2025. The {topic} crews inspected "
        f"{i + 3} sites, replaced {i % 11 + 1} units and logged {i * 3 + version} faults.",
    ]
    return "\n\n".join(paragraphs).encode()


def ingest(data: bytes, name: str, embedder: Any) -> tuple[str, list[dict[str, Any]]]:
    """(doc_id, chunks with entities) through the pipeline's own extraction and chunking."""
    from llmops.chunking import chunk_pages
    from llmops.entities import extract_entities
    from llmops.ingestion import IngestConfig, extract_document

    pages = extract_document(data, name, IngestConfig())
    chunks = [c.to_dict() for c in chunk_pages(pages, embedder.count_tokens, 200, 24)]
    for c in chunks:
        c["entities"] = extract_entities(c["text"], c["language"], "rules")
    return pages[0].doc_id, chunks


def timed_refresh(store: Any, corpus: dict[str, list[dict[str, Any]]], embedder: Any,
                  version: str) -> tuple[float, dict[str, Any]]:  # fmt: skip
    from llmops.embedding import refresh_store

    chunks = [c for doc in corpus.values() for c in doc]
    started = time.perf_counter()
    stats = refresh_store(
        store,
        chunks,
        embedder,
        set(corpus),
        entities={c["chunk_id"]: c["entities"] for c in chunks},
        entity_versions={c["chunk_id"]: version for c in chunks},
    )
    return time.perf_counter() - started, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 documents instead of 100")
    parser.add_argument("--documents", type=int, default=None)
    args = parser.parse_args()
    n = args.documents or (40 if args.quick else 100)

    from llmops.embedding import Embedder
    from llmops.lineage import entities_version
    from llmops.vectorstore import VectorStore

    embedder = Embedder(device="cpu")
    embedder.encode(["warm up the model and its threads"])
    version = entities_version("rules")
    corpus = dict(ingest(document(i), f"report-{i}.txt", embedder) for i in range(n))
    n_chunks = sum(len(c) for c in corpus.values())
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(tmp, dim=embedder.dim)
        full_s, full = timed_refresh(store, corpus, embedder, version)
        old_id = next(iter(corpus))
        del corpus[old_id]
        new_id, new_chunks = ingest(document(0, version=1), "report-0.txt", embedder)
        corpus[new_id] = new_chunks
        inc_s, inc = timed_refresh(store, corpus, embedder, version)
        noop_s, noop = timed_refresh(store, corpus, embedder, version)
        assert store.count() == sum(len(c) for c in corpus.values())
        assert old_id not in store.document_ids() and new_id in store.document_ids()

    print(f"[knowledge_base] {n} documents, {n_chunks} chunks, MiniLM on CPU, LanceDB")
    print("  run                 seconds  embedded  removed  reused")
    for name, s, st in (("full rebuild", full_s, full), ("1 changed document", inc_s, inc),
                        ("no change", noop_s, noop)):  # fmt: skip
        print(f"  {name:<19}{s:8.2f}  {st['embedded']:8d}  {st['removed_rows']:7d}  "
              f"{st['skipped']:6d}")
    print(f"  incremental / full time: {inc_s / full_s:.3f} "
          f"(embedded {inc['embedded']}/{full['embedded']} = "
          f"{inc['embedded'] / max(full['embedded'], 1):.3f}; 1/N = {1 / n:.3f})")
    print(f"  no-change / full time:   {noop_s / full_s:.3f}")


if __name__ == "__main__":
    main()
