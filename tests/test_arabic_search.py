"""Full-text search over Arabic: the index and the query share one light-stemmed form."""

from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from llmops.arabic import light_stem, search_form
from llmops.vectorstore import VectorStore, chunk_schema

DIM = 8
DOCS = {
    "elections": "أعلنت اللجنة العليا النتائج النهائية للانتخابات التشريعية في جميع الدوائر",
    "water": "ارتفع استهلاك المياه في المدينة خلال فصل الصيف بسبب الحرارة",
    "budget": "وافق البرلمان على الموازنة العامة للدولة بعد نقاش طويل",
    "english": "The water authority published its annual report on pumping stations",
}


@pytest.mark.parametrize(
    ("variants", "stem"),
    [
        (["الانتخابات", "والانتخابات", "انتخابات", "للانتخابات"], "انتخاب"),
        (["التشريعية", "تشريعية", "تشريعي"], "تشريع"),
        (["الناخبين", "ناخبون", "والناخبين"], "ناخب"),
        (["المياه", "والمياه", "بالمياه", "مياه"], "ميا"),
    ],
)
def test_inflected_forms_share_one_search_form(variants: list[str], stem: str):
    assert {search_form(v) for v in variants} == {stem}


def test_search_form_leaves_latin_and_short_words_alone():
    assert search_form("Water pumps, 2024") == "Water pumps, 2024"
    assert light_stem("ولد") == "ولد"  # a short word keeps its letters: no stem under 2
    # diacritics, tatweel and presentation-form ligatures fold before stemming
    assert search_form("الْمِيَـــاه") == search_form("المياه")
    assert search_form("ﻻ") == "لا"


def _rows(texts: dict[str, str]) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i, (doc, text) in enumerate(texts.items()):
        v = rng.normal(size=DIM).astype(np.float32)
        rows.append({"chunk_id": f"c{i}", "doc_id": doc, "text": text, "language": "ar",
                     "vector": v / np.linalg.norm(v), "model_id": "m"})
    return rows


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("نتائج انتخابات تشريعية", "elections"),  # no article, other inflections
        ("والمياه في الصيف", "water"),
        ("الموازنات العامة", "budget"),
        ("annual reports of the water authority", "english"),  # English keeps its stemmer
    ],
)
def test_full_text_search_matches_other_inflections(tmp_path, query: str, expected: str):
    store = VectorStore(str(tmp_path / "db"), dim=DIM)
    store.upsert(_rows(DOCS))
    store.ensure_indexes()
    hits = store.search(query, k=2, mode="fts")
    assert hits and hits[0]["doc_id"] == expected, [h["doc_id"] for h in hits]
    assert hits[0]["text"] == DOCS[expected]  # results carry the original text


def test_table_from_before_search_text_is_migrated_on_open(tmp_path):
    """A table written without `search_text` is rewritten once; no row is lost."""
    old_schema = pa.schema([f for f in chunk_schema(DIM) if f.name != "search_text"])
    store = VectorStore(str(tmp_path / "db"), dim=DIM)
    full = store._to_arrow(_rows(DOCS))
    db = lancedb.connect(str(tmp_path / "old"))
    db.create_table("chunks", data=full.select(old_schema.names).cast(old_schema))

    migrated = VectorStore(str(tmp_path / "old"), dim=DIM)
    assert "search_text" in migrated.rows().column_names
    assert migrated.count() == len(DOCS)
    migrated.ensure_indexes()
    assert migrated.search("انتخابات", k=1, mode="fts")[0]["doc_id"] == "elections"
