"""Retrieval evaluation: metric arithmetic, label resolution, and a small real end-to-end set."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmops.embedding import Embedder, embed_missing
from llmops.retrieval_eval import (
    LabelledQuery,
    doc_matches,
    evaluate_retrieval,
    format_table,
    load_labelled,
    normalize_text,
    relevant_chunk_ids,
)
from llmops.vectorstore import VectorStore

SAMPLE_PDFS = {
    "federal-register-2020-17221.pdf",
    "scotus-transcript-p1.pdf",
    "issue-33-lorem-ipsum.pdf",
    "senate-expenditures.pdf",
    "nics-background-checks-2015-11-rotated.pdf",
    "la-precinct-bulletin-2014-p1.pdf",
}

# Eight short documents on unrelated subjects, three paragraphs each.
DOCS = {
    "volcano-report.txt": [
        "Mount Etna erupted on Tuesday, sending an ash plume four kilometres into the sky.",
        "Catania airport suspended all departures while the ash cloud drifted east.",
        "Seismologists recorded more than two hundred small tremors before the eruption.",
    ],
    "bakery-manual.txt": [
        "Sourdough starter must be fed with equal weights of flour and water every day.",
        "Bake the loaves at 240 degrees Celsius for twenty minutes with steam.",
        "Store the bread in a linen bag; a plastic bag softens the crust.",
    ],
    "chess-club-minutes.txt": [
        "The chess club elected Maria Lopez as treasurer for the coming season.",
        "Membership fees rise to forty euros a year to pay for new clocks and boards.",
        "The spring tournament uses a Swiss system with seven rounds.",
    ],
    "bike-repair.txt": [
        "To fix a flat tyre, remove the wheel, lever off the tyre and find the puncture.",
        "Roughen the tube around the hole with sandpaper before applying the patch glue.",
        "Inflate the tube slightly before refitting so it does not get pinched.",
    ],
    "tax-notice.txt": [
        "Annual income tax returns must be filed by the thirty-first of July.",
        "Late filing incurs a penalty of one hundred pounds plus daily interest.",
        "Self-employed workers can deduct the cost of tools and work clothing.",
    ],
    "garden-guide.txt": [
        "Plant tomato seedlings outdoors only after the last spring frost has passed.",
        "Water tomatoes at the base in the morning to prevent leaf blight.",
        "Pinch out side shoots so the plant puts its energy into fruit.",
    ],
    "astronomy-note.txt": [
        "Jupiter reaches opposition in November and is visible all night long.",
        "A small telescope shows the four Galilean moons as points of light.",
        "The Great Red Spot is a storm larger than the Earth.",
    ],
    "hr-policy.txt": [
        "Employees accrue two days of paid annual leave for each month worked.",
        "Sick leave requires a doctor's note after three consecutive days of absence.",
        "Parental leave of sixteen weeks is available to all parents.",
    ],
}

QUESTIONS = [
    ("q1", "Which flights were cancelled because of volcanic ash?", "volcano-report.txt",
     "Catania airport suspended"),
    ("q2", "At what oven temperature should sourdough be baked?", "bakery-manual.txt",
     "240 degrees Celsius"),
    ("q3", "Who became treasurer of the chess club?", "chess-club-minutes.txt", "Maria Lopez"),
    ("q4", "How do I repair a punctured bicycle inner tube?", "bike-repair.txt",
     "patch glue"),
    ("q5", "What is the deadline for submitting an income tax return?", "tax-notice.txt",
     "thirty-first of July"),
    ("q6", "When is it safe to move tomato plants into the garden?", "garden-guide.txt",
     "last spring frost"),
    ("q7", "Which moons of Jupiter can be seen through a small telescope?", "astronomy-note.txt",
     "Galilean moons"),
    ("q8", "How much paid holiday do staff earn per month?", "hr-policy.txt",
     "two days of paid annual leave"),
    ("q9", "What is the penalty for filing taxes late?", "tax-notice.txt",
     "penalty of one hundred"),
    ("q10", "How long is parental leave?", "hr-policy.txt", "sixteen weeks"),
]  # fmt: skip


def _doc_id(name: str, paragraphs: list[str]) -> str:
    stem = Path(name).stem
    return f"{stem}-{hashlib.sha256(chr(10).join(paragraphs).encode()).hexdigest()[:12]}"


def _chunks() -> list[dict[str, Any]]:
    out = []
    for name, paragraphs in DOCS.items():
        doc_id = _doc_id(name, paragraphs)
        for i, text in enumerate(paragraphs):
            cid = hashlib.sha256(f"{doc_id}\n{text}".encode()).hexdigest()[:16]
            out.append({"chunk_id": cid, "doc_id": doc_id, "ordinal": i, "text": text})
    return out


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> VectorStore:
    vs = VectorStore(str(tmp_path_factory.mktemp("lance")))
    rows, _ = embed_missing(_chunks(), embedder, set())
    vs.upsert(rows)
    vs.ensure_indexes()
    return vs


def _labelled() -> list[LabelledQuery]:
    return [LabelledQuery(i, q, d, p) for i, q, d, p in QUESTIONS]


def test_normalize_and_doc_matching() -> None:
    assert normalize_text("  Resulting\nin  189\tFATALITIES ") == "resulting in 189 fatalities"
    assert normalize_text("co\u00adoperate ﬁle") == "cooperate file"
    assert doc_matches(
        "federal-register-2020-17221-0123456789ab", "federal-register-2020-17221.pdf"
    )
    assert doc_matches("scotus_transcript_p1", "scotus-transcript-p1.pdf")
    assert not doc_matches(
        "federal-register-2020-172210-0123456789ab", "federal-register-2020-17221.pdf"
    )
    assert not doc_matches("senate-expenditures-abc", "scotus-transcript-p1.pdf")


def test_shipped_labelled_set_is_well_formed() -> None:
    queries = load_labelled()
    assert 15 <= len(queries) <= 40
    assert len({q.id for q in queries}) == len(queries)
    assert {q.doc for q in queries} == SAMPLE_PDFS | INBOX_DOCS
    with pytest.raises(ValueError, match="phrase"):
        LabelledQuery.from_dict({"question": "q", "doc": "d.pdf"})


def test_shipped_labels_resolve_in_the_pipelines_chunks(
    corpus_dir: Path, embedder, extracted
) -> None:
    """Every label of both sets resolves in the chunks the pipeline itself stores: pages from
    extract_document, chunks from chunk_pages at the configured sizes (not a bare text layer,
    whose squashed table text no stored chunk contains)."""
    import pyarrow as pa

    from llmops.chunking import chunk_pages
    from llmops.retrieval_eval import DEFAULT_LABELLED, _find_document

    queries = load_labelled() + load_labelled(DEFAULT_LABELLED.with_name("retrieval_heldout.yaml"))
    folders = [corpus_dir, Path(__file__).resolve().parents[1] / "examples" / "inbox"]
    rows: list[dict[str, Any]] = []
    for name in sorted({q.doc for q in queries}):
        path = _find_document(name, folders)
        assert path is not None, name
        pages = extracted(path, name)
        rows += [c.to_dict() for c in chunk_pages(pages, embedder.count_tokens, 200, 24)]

    class Chunks:
        def rows(self, columns: list[str]) -> pa.Table:
            return pa.table({c: [r[c] for r in rows] for c in columns})

    relevant = relevant_chunk_ids(Chunks(), queries)
    assert [q.id for q in queries if not relevant[q.id]] == []


INBOX_DOCS = {
    "water-authority-annual-report-2024.pdf",
    "customer-charter.docx",
    "drought-faq.html",
    "tariff-notice-ar.txt",
}


class _FakeStore:
    """Returns fixed rankings so the metric arithmetic can be checked exactly."""

    def __init__(self, rows: list[dict[str, str]], rankings: dict[str, list[str]]) -> None:
        self._rows = rows
        self._rankings = rankings

    def rows(self, columns: list[str]) -> Any:
        import pyarrow as pa

        return pa.table({c: [r[c] for r in self._rows] for c in columns})

    def search(self, text: str, vector: Any, k: int, mode: str) -> list[dict[str, Any]]:
        ids = self._rankings[text][:k]
        return [{"chunk_id": cid, "rank": i} for i, cid in enumerate(ids, start=1)]


class _FakeEmbedder:
    def encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)


def test_metric_arithmetic_on_fixed_rankings() -> None:
    rows = [
        {"chunk_id": "c1", "doc_id": "alpha-aaaaaaaaaaaa", "text": "The answer is forty two."},
        {"chunk_id": "c2", "doc_id": "alpha-aaaaaaaaaaaa", "text": "Nothing here."},
        {"chunk_id": "c3", "doc_id": "beta-bbbbbbbbbbbb", "text": "Blue  WHALES sing."},
        {"chunk_id": "c4", "doc_id": "gamma-cccccccccccc", "text": "blue whales sing too"},
    ]
    labelled = [
        {"id": "a", "question": "qa", "doc": "alpha.pdf", "phrase": "forty two"},
        {"id": "b", "question": "qb", "doc": "beta.txt", "phrase": "blue whales sing"},
        {"id": "c", "question": "qc", "doc": "alpha.pdf", "phrase": "nothing"},
        {"id": "d", "question": "qd", "doc": "missing.pdf", "phrase": "anything"},
    ]
    rankings = {
        "qa": ["c2", "c1", "c3"],  # relevant at rank 2
        "qb": ["c4", "c1", "c2", "c3"],  # c4 has the phrase but is another doc: rank 4
        "qc": ["c1", "c3", "c4", "c1", "c4", "c2"],  # relevant only at rank 6 > k
    }
    store = _FakeStore(rows, rankings)
    relevant = relevant_chunk_ids(store, [LabelledQuery.from_dict(q) for q in labelled])
    assert relevant == {"a": {"c1"}, "b": {"c3"}, "c": {"c2"}, "d": set()}
    result = evaluate_retrieval(store, _FakeEmbedder(), labelled, k=5, modes=("x",), details=True)
    metrics = result["x"]
    assert metrics["n"] == 3 and metrics["unresolved"] == 1
    assert metrics["hit@5"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)
    assert metrics["per_query"] == [
        {"id": "a", "rank": 2},
        {"id": "b", "rank": 4},
        {"id": "c", "rank": None},
    ]
    assert metrics["unresolved_ids"] == ["d"]
    assert evaluate_retrieval(store, _FakeEmbedder(), labelled, k=3, modes=("x",))["x"][
        "hit@3"
    ] == pytest.approx(1 / 3)


def test_end_to_end_small_set(store: VectorStore, embedder: Embedder) -> None:
    results = evaluate_retrieval(store, embedder, _labelled(), k=5)
    assert set(results) == {"vector", "fts", "hybrid"}
    for metrics in results.values():
        assert metrics["n"] == len(QUESTIONS) and metrics["unresolved"] == 0
        assert 0.0 <= metrics["mrr"] <= metrics["hit@5"] <= 1.0
    # Paraphrased questions over 8 unrelated topics (24 chunks, one relevant each). Measured:
    # vector hit@5 1.0 / MRR 1.0, hybrid 1.0 / 0.95, fts 1.0 / 0.88. A random ranking would give
    # hit@5 = 5/24 ~ 0.21, so 0.8 fails on a broken embedding, index or fusion, yet leaves room
    # for a different model version.
    assert results["vector"]["hit@5"] >= 0.8
    assert results["hybrid"]["hit@5"] >= 0.8
    assert results["hybrid"]["mrr"] >= 0.6
    table = format_table(results)
    assert table.count("\n") == 4 and "| hybrid |" in table
