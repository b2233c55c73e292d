"""LanceDB vector store: incremental re-indexing, stale-row removal, FTS / hybrid / ANN search."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from llmops.embedding import Embedder, embed_missing
from llmops.vectorstore import VectorStore, ann_params, rrf_fuse

TOPICS = [
    "aircraft flight control software",
    "supreme court oral argument",
    "senate office travel expenses",
    "firearm background check statistics",
    "county election precinct results",
    "municipal water treatment plant",
    "wheat harvest and crop rotation",
    "hospital emergency room staffing",
    "railway signal maintenance",
    "public library opening hours",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu", batch_size=32)


def _doc_id(name: str, paragraphs: list[str]) -> str:
    """Content-hash document id, like ingestion's document_id."""
    return f"{name}-{hashlib.sha256(chr(10).join(paragraphs).encode()).hexdigest()[:12]}"


def _chunks(doc_id: str, paragraphs: list[str]) -> list[dict]:
    return [
        {
            "chunk_id": hashlib.sha256(f"{doc_id}\n{text}".encode()).hexdigest()[:16],
            "doc_id": doc_id,
            "ordinal": i,
            "text": text,
            "kind": "text",
            "heading": f"Section {i + 1}",
            "page_start": i + 1,
            "page_end": i + 1,
            "language": "en",
            "token_count": len(text.split()),
        }
        for i, text in enumerate(paragraphs)
    ]


def _paragraphs(topic: str) -> list[str]:
    return [
        f"This report introduces {topic} and the people responsible for it.",
        f"Recent figures on {topic} show a steady change over the last three years.",
        f"Recommendations about {topic} are listed for the coming budget period.",
    ]


def _snapshot(store: VectorStore) -> dict[str, tuple]:
    table = store.rows(columns=["chunk_id", "doc_id", "vector", "embedded_at"])
    return {
        cid: (doc, tuple(np.round(vec, 6)), ts)
        for cid, doc, vec, ts in zip(
            table.column("chunk_id").to_pylist(),
            table.column("doc_id").to_pylist(),
            table.column("vector").to_numpy(zero_copy_only=False),
            table.column("embedded_at").to_pylist(),
            strict=True,
        )
    }


def _sync(store: VectorStore, embedder: Embedder, docs: dict[str, list[str]]) -> dict:
    """What the chunk_embeddings asset does: embed missing, upsert, drop stale, index."""
    chunks = [c for name, paras in docs.items() for c in _chunks(_doc_id(name, paras), paras)]
    rows, stats = embed_missing(chunks, embedder, store.ids_embedded_with(embedder.model_id))
    store.upsert(rows)
    doc_ids = {c["doc_id"] for c in chunks}
    stats["removed_docs_rows"] = store.retain_documents(doc_ids)
    stats["removed_chunk_rows"] = store.retain_chunks({c["chunk_id"] for c in chunks}, doc_ids)
    store.ensure_indexes(min_rows_for_ann=10_000)
    return stats


def test_incremental_add_and_change(tmp_path: Path, embedder: Embedder) -> None:
    store = VectorStore(str(tmp_path / "lance"))
    docs = {f"doc{i}": _paragraphs(t) for i, t in enumerate(TOPICS)}
    first = _sync(store, embedder, docs)
    assert first["embedded"] == 30 and first["skipped"] == 0
    assert store.count() == 30 and store.dim == 384
    v1 = store.version
    before = _snapshot(store)

    # idempotent: nothing new, nothing embedded, nothing written
    again = _sync(store, embedder, docs)
    assert again["embedded"] == 0 and again["skipped"] == 30
    assert again["removed_docs_rows"] == 0 and again["removed_chunk_rows"] == 0
    assert _snapshot(store) == before

    # add one document; change doc3 (new content hash -> new doc_id, all 3 chunks new);
    # edit doc5 in place under a stable id (only one paragraph changes -> one new chunk)
    old_doc3 = _doc_id("doc3", docs["doc3"])
    docs["doc10"] = _paragraphs("lighthouse keeper logbooks")
    docs["doc3"] = [*docs["doc3"][:2], "Firearm statistics were revised in November 2015."]
    stable5 = _doc_id("doc5", docs["doc5"])
    old5_last = _chunks(stable5, docs["doc5"])[2]["chunk_id"]
    new5 = [*docs["doc5"][:2], "The water plant now publishes turbidity readings daily."]
    chunks5 = _chunks(stable5, new5)

    chunks = [
        c
        for name, paras in docs.items()
        if name != "doc5"
        for c in _chunks(_doc_id(name, paras), paras)
    ] + chunks5
    rows, stats = embed_missing(chunks, embedder, store.ids_embedded_with(embedder.model_id))
    assert stats["embedded"] == 3 + 3 + 1
    assert stats["skipped"] == 33 - 7
    store.upsert(rows)
    doc_ids = {c["doc_id"] for c in chunks}
    assert store.retain_documents(doc_ids) == 3  # doc3's old rows
    assert store.retain_chunks({c["chunk_id"] for c in chunks}, doc_ids) == 1  # doc5's old text
    store.ensure_indexes()

    assert store.count() == 33
    assert store.version > v1
    after = _snapshot(store)
    assert old_doc3 not in {doc for doc, _, _ in after.values()}
    assert old5_last not in after
    assert chunks5[2]["chunk_id"] in after
    untouched = {cid: row for cid, row in before.items() if row[0] != old_doc3 and cid != old5_last}
    assert len(untouched) == 26
    for cid, row in untouched.items():  # same ids, same vectors, not rewritten
        assert after[cid] == row
    assert store.stats()["documents"] == 11


def test_other_model_sees_nothing_embedded(tmp_path: Path, embedder: Embedder) -> None:
    store = VectorStore(str(tmp_path / "lance"))
    _sync(store, embedder, {"a": _paragraphs("railway signals")})
    assert len(store.ids_embedded_with(embedder.model_id)) == 3
    assert store.ids_embedded_with("other-model@000000000000") == set()
    assert store.ids_embedded_with("it's; DROP") == set()  # quoting


def test_fts_and_hybrid_find_exact_phrase_after_updates(tmp_path: Path, embedder: Embedder) -> None:
    store = VectorStore(str(tmp_path / "lance"))
    docs = {f"doc{i}": _paragraphs(t) for i, t in enumerate(TOPICS)}
    _sync(store, embedder, docs)
    phrase = "Zanzibar clove exporters negotiated tariffs"
    # new rows arrive after the FTS index was built: still searchable before re-indexing
    extra = _chunks("spice-doc", [f"In 1890 {phrase} with the sultan's treasury."])
    rows, _ = embed_missing(extra, embedder, store.ids_embedded_with(embedder.model_id))
    store.upsert(rows)
    assert store.stats()["indexes"][0]["unindexed_rows"] == 1
    qvec = embedder.encode([phrase])[0]
    for mode in ("fts", "hybrid", "vector"):
        hits = store.search(phrase, qvec, k=3, mode=mode)
        assert hits[0]["chunk_id"] == extra[0]["chunk_id"], mode
    assert store.ensure_indexes()["fts"] == "built"
    assert store.ensure_indexes()["fts"] == "current"
    hits = store.search(phrase, qvec, k=5, mode="hybrid")
    top = hits[0]
    assert top["chunk_id"] == extra[0]["chunk_id"]
    assert top["vector_rank"] == 1 and top["fts_rank"] == 1
    assert top["score"] == pytest.approx(2 / 61)
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert {"doc_id", "text", "heading", "page_start", "entities", "model_id"} <= set(top)
    fts = store.search(phrase, None, k=5, mode="fts")
    assert fts[0]["chunk_id"] == extra[0]["chunk_id"]
    assert all(h["score"] >= fts[-1]["score"] for h in fts)

    # deleting the document removes it from every search path, also after re-indexing
    assert store.delete_documents(["spice-doc"]) == 1
    for mode in ("fts", "hybrid", "vector"):
        hits = store.search(phrase, qvec, k=5, mode=mode)
        assert extra[0]["chunk_id"] not in {h["chunk_id"] for h in hits}, mode
    store.ensure_indexes()
    assert extra[0]["chunk_id"] not in {h["chunk_id"] for h in store.search(phrase, qvec, k=5)}
    # filters and odd query text
    hits = store.search("figures", qvec, k=10, mode="fts", where="doc_id LIKE 'doc1-%'")
    assert hits and {h["doc_id"].split("-")[0] for h in hits} == {"doc1"}
    assert store.search('"quoted" (paren) AND OR -x: FAA–2020', qvec, k=3, mode="fts") == []
    with pytest.raises(ValueError):
        store.search("x", None, mode="vector")
    with pytest.raises(ValueError):
        store.search("x", qvec, mode="bm25")


def _synthetic_rows(n: int, dim: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {
            "chunk_id": f"{i:016x}",
            "doc_id": f"d{i % 37}",
            "text": f"row {i} token{i % 97} filler words",
            "vector": vectors[i],
            "model_id": "synthetic@0",
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("index_type", ["IVF_HNSW_SQ", "IVF_PQ"])
def test_ann_index_at_small_threshold(tmp_path: Path, index_type: str) -> None:
    store = VectorStore(str(tmp_path / "lance"), dim=64)
    rows = _synthetic_rows(1200, 64)
    store.upsert(rows[:300])
    assert store.ensure_indexes(min_rows_for_ann=1000, index_type=index_type)["ann"] == "absent"
    store.upsert(rows[300:])
    report = store.ensure_indexes(min_rows_for_ann=1000, index_type=index_type)
    assert report["ann"].startswith(f"built {index_type}")
    kinds = {tuple(i["columns"]): i for i in store.stats()["indexes"]}
    assert kinds[("vector",)]["indexed_rows"] == 1200
    assert store.ensure_indexes(min_rows_for_ann=1000, index_type=index_type)["ann"] == "current"
    found = 0
    for i in range(0, 1200, 60):
        hits = store.search(None, rows[i]["vector"], k=5, mode="vector")
        found += hits[0]["chunk_id"] == rows[i]["chunk_id"]
    assert found >= 18  # self-retrieval through the index (20 probes)


def test_ann_params_shape() -> None:
    assert ann_params(100_000, 384) == {"num_partitions": 40, "num_sub_vectors": 24}
    assert ann_params(500, 384)["num_partitions"] == 3
    assert ann_params(10, 100)["num_sub_vectors"] == 25
    assert 384 % ann_params(10_000_000, 384)["num_sub_vectors"] == 0


def test_rrf_fuse_is_reciprocal_rank_fusion() -> None:
    fused = rrf_fuse({"vector": ["a", "b", "c"], "fts": ["c", "a", "d"]}, k=60)
    scores = {cid: score for cid, score, _ in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [cid for cid, _, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][2] == {"vector": 1, "fts": 2}


def test_reopen_dim_guard_and_deletes(tmp_path: Path) -> None:
    uri = str(tmp_path / "lance")
    store = VectorStore(uri)
    assert store.count() == 0 and store.version == 0 and store.search("x", np.ones(8)) == []
    rows = _synthetic_rows(20, 8)
    rows[0]["doc_id"] = "o'brien-1"
    store.upsert(rows)
    reopened = VectorStore(uri)
    assert reopened.dim == 8 and reopened.count() == 20 and reopened.version == store.version
    with pytest.raises(ValueError, match="8-dim"):
        reopened.upsert(_synthetic_rows(2, 16))
    assert reopened.delete_documents(["o'brien-1"]) == 1
    updated = dict(rows[1], text="rewritten text")
    assert reopened.upsert([updated]) == {"inserted": 0, "updated": 1, "version": reopened.version}
    assert reopened.count() == 19
    assert reopened.retain_documents({"d2", "d3"}) == 19 - 2
    assert reopened.document_ids() == {"d2", "d3"}


def test_refresh_store_rewrites_only_entities_of_another_extractor_version(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A new extractor rewrites stored entities in place: no vector is recomputed, rows already
    at the current version are left alone, and progress is reported per batch."""
    from llmops.embedding import refresh_store

    docs = {f"doc{i}": _paragraphs(t) for i, t in enumerate(TOPICS[:3])}
    chunks = [c for n, p in docs.items() for c in _chunks(_doc_id(n, p), p)]
    current = {c["doc_id"] for c in chunks}
    ids = [c["chunk_id"] for c in chunks]
    store = VectorStore(str(tmp_path), dim=embedder.dim)
    calls: list[tuple[int, int]] = []
    first = refresh_store(
        store, chunks, embedder, current,
        entities={cid: {"ORG": ["Old"]} for cid in ids},
        entity_versions=dict.fromkeys(ids, "v1"),
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert first["embedded"] == 9 and first["entities_rewritten"] == 0
    assert calls == [(9, 9)]
    before = _snapshot(store)
    changed = ids[:4]  # e.g. one document re-extracted by the new extractor
    second = refresh_store(
        store, chunks, embedder, current,
        entities={cid: {"ORG": ["New" if cid in changed else "Old"]} for cid in ids},
        entity_versions={cid: "v2" if cid in changed else "v1" for cid in ids},
    )  # fmt: skip
    assert second["embedded"] == 0 and second["entities_rewritten"] == 4
    assert _snapshot(store) == before  # vectors and embedded_at untouched
    stored = {r["chunk_id"]: r for r in store.rows().to_pylist()}
    for cid in ids:
        assert stored[cid]["entities_version"] == ("v2" if cid in changed else "v1")
        assert json.loads(stored[cid]["entities"])["ORG"] == ["New" if cid in changed else "Old"]
    assert store.update_entities({}, dict.fromkeys(changed, "v2")) == 0  # already current


def test_a_table_from_before_entity_versions_gains_the_column(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    from llmops.vectorstore import chunk_schema

    old = pa.Table.from_pylist(
        [{"chunk_id": "c1", "doc_id": "d", "text": "t", "vector": [1.0, 0.0],
          "language": "en", "page_start": 1, "page_end": 1, "heading": "",
          "entities": "{}", "model_id": "m", "embedded_at": None}],
        schema=chunk_schema(2),
    )  # fmt: skip
    lancedb.connect(str(tmp_path)).create_table("chunks", data=old)
    store = VectorStore(str(tmp_path))
    assert store.entity_versions() == {"c1": None}
    assert store.update_entities({"c1": {"ORG": ["X"]}}, {"c1": "v1"}) == 1
    assert store.entity_versions() == {"c1": "v1"}


def test_hybrid_survives_a_winner_moved_before_the_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both parts return LanceDB row ids; a write between them and the take can move a winner.
    The search then runs once more and leaves out what is still missing, instead of failing."""
    import llmops.vectorstore as vs

    store = VectorStore(str(tmp_path / "lance"), dim=64)
    rows = _synthetic_rows(200, 64)
    store.upsert(rows)
    expected = store.search("token5 filler", rows[5]["vector"], k=4, mode="hybrid")
    assert expected[0]["chunk_id"] == rows[5]["chunk_id"]
    calls = []
    real_fuse = vs.rrf_fuse

    def fuse_with_a_vanished_row(lists, k=vs.RRF_K):
        calls.append(1)
        gone = 10**15  # a row id no row has (as after a compaction rewrote the fragment)
        return [(gone, 1.0, {"vector": 1}), *real_fuse(lists, k)]

    monkeypatch.setattr(vs, "rrf_fuse", fuse_with_a_vanished_row)
    hits = store.search("token5 filler", rows[5]["vector"], k=4, mode="hybrid")
    assert len(calls) == 2  # first attempt saw the gap and retried
    assert [h["chunk_id"] for h in hits] == [h["chunk_id"] for h in expected[:3]]
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_a_run_with_older_inputs_keeps_the_rows_of_a_document_it_never_saw(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Two knowledge-base runs overlap: the newer one embedded document C, which arrived after
    the older one loaded its chunks. The older one, writing next, keeps C's rows (C is current)
    and still drops the chunks its own documents no longer produce."""
    from llmops.embedding import refresh_store

    docs = {f"doc{i}": _paragraphs(t) for i, t in enumerate(TOPICS[:3])}
    by_doc = {_doc_id(n, p): _chunks(_doc_id(n, p), p) for n, p in docs.items()}
    a, b, c = by_doc
    store = VectorStore(str(tmp_path), dim=embedder.dim)
    newer = [*by_doc[a], *by_doc[b], *by_doc[c]]
    refresh_store(store, newer, embedder, {a, b, c})
    assert store.document_ids() == {a, b, c}
    older = [*by_doc[a], *by_doc[b][:-1]]  # b's last chunk is one its chunker no longer makes
    stats = refresh_store(store, older, embedder, {a, b, c})
    assert store.document_ids() == {a, b, c}
    assert stats["removed_rows"] == 1 and stats["embedded"] == 0
    kept = set(store.rows(columns=["chunk_id"]).column("chunk_id").to_pylist())
    assert {ch["chunk_id"] for ch in by_doc[c]} <= kept
    assert by_doc[b][-1]["chunk_id"] not in kept
