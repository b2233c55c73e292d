"""Great Expectations suites from configs/expectations, and near-duplicate detection."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pandas as pd
import pytest

from llmops.quality import (
    _shingles,
    jaccard,
    load_suite,
    lsh_bands,
    near_duplicate_ratio,
    near_duplicates,
    run_suite,
)

LANGS = {"allowed_languages": ["en", "ar", "und"]}


def _pages(char_counts, language="en"):
    return pd.DataFrame(
        {
            "text": ["x" * n for n in char_counts],
            "char_count": char_counts,
            "language": [language] * len(char_counts),
            "method": ["text"] * len(char_counts),
        }
    )


def test_pages_suite_passes_real_pages_and_tolerates_a_blank_page():
    result = run_suite("pages", _pages([1200, 0, 800]), LANGS)
    assert result.success, result.markdown()
    assert result.statistics["evaluated_expectations"] == 5


def test_pages_suite_fails_a_document_of_empty_pages_and_says_why():
    result = run_suite("pages", _pages([0, 0, 0]), LANGS)
    assert not result.success
    assert [f["column"] for f in result.failed] == ["char_count"]
    assert "char_count" in result.markdown()


def test_pages_suite_rejects_a_language_outside_the_allowed_set():
    result = run_suite("pages", _pages([500], language="zh"), LANGS)
    assert not result.success
    assert result.failed[0]["column"] == "language"


def test_chunks_suite_checks_ids_and_token_bounds():
    good = pd.DataFrame(
        {
            "chunk_id": ["a", "b"],
            "token_count": [12, 200],
            "language": ["en", "ar"],
            "kind": ["text", "table"],
        }
    )
    assert run_suite("chunks", good, {**LANGS, "max_tokens": 200}).success
    bad = good.assign(chunk_id=["a", "a"], token_count=[12, 201])
    result = run_suite("chunks", bad, {**LANGS, "max_tokens": 200})
    assert {f["expectation"] for f in result.failed} == {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
    }


def test_embeddings_suite_checks_dimension_and_norm():
    df = pd.DataFrame({"chunk_id": ["a", "b"], "dim": [384, 384], "norm": [1.0, 0.9999]})
    assert run_suite("embeddings", df, {"dim": 384}).success
    result = run_suite("embeddings", df.assign(dim=[384, 768], norm=[1.0, 3.2]), {"dim": 384})
    assert len(result.failed) == 2


def test_missing_column_and_missing_parameter_are_clear():
    result = run_suite("chunks", pd.DataFrame({"chunk_id": ["a"]}), {**LANGS, "max_tokens": 5})
    assert not result.success
    assert {f["column"] for f in result.failed} == {"token_count", "language", "kind"}
    with pytest.raises(KeyError, match="max_tokens"):
        run_suite("chunks", pd.DataFrame({"chunk_id": ["a"]}), LANGS)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_suite("nope")


def test_near_duplicate_ratio():
    base = (
        "The Authority renewed 27 kilometres of distribution pipe during the year, compared "
        "with 21 kilometres in 2023, and installed pressure management zones in Riverside."
    )
    near = base.replace("Riverside", "Hillcrest")  # one word of 27 changed
    other = "Reservoir storage stood at 41% of capacity on September 9, 2024, the Board heard."
    assert jaccard({"a"}, {"a"}) == 1.0
    assert near_duplicate_ratio([base, other]) == 0.0
    assert near_duplicate_ratio([base, base, other, other]) == pytest.approx(0.5)
    assert near_duplicate_ratio([base, near], threshold=0.8) == pytest.approx(0.5)
    assert near_duplicate_ratio([base, near], threshold=0.99) == 0.0


def _corpus(n_distinct: int, n_near: int, seed: int = 0) -> list[str]:
    """Random 60-150 word texts plus copies with 1-2 words replaced (Jaccard ~0.8-0.95)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)] + ["الماء", "شبكة", "الهيئة", "تقرير", "السنة", "محطة"]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(60, 150))) for _ in range(n_distinct)]
    for _ in range(n_near):
        words = rng.choice(texts[:n_distinct]).split()
        for _ in range(rng.randint(1, 2)):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        texts.append(" ".join(words))
    return texts


def test_near_duplicates_match_exact_jaccard_on_a_corpus():
    """LSH finds (nearly) every pair the O(n^2) exact scan finds, and never a false one."""
    texts = _corpus(300, 60)
    sets = [_shingles(t) for t in texts]
    truth = {i for i in range(len(sets)) if any(jaccard(sets[i], sets[j]) >= 0.8 for j in range(i))}
    found = near_duplicates(texts, threshold=0.8)
    assert set(found) <= truth  # confirmed with exact Jaccard: no false positives
    assert len(found) >= 0.97 * len(truth)
    assert all(jaccard(sets[i], sets[j]) >= 0.8 and j < i for i, j in found.items())
    # distinct texts are not merged
    assert near_duplicates(texts[:300], threshold=0.8) == {}


def test_near_duplicates_arabic():
    base = (
        "جددت الهيئة سبعة وعشرين كيلومترا من أنابيب التوزيع خلال العام مقارنة بواحد وعشرين "
        "كيلومترا في العام السابق وركبت مناطق لإدارة الضغط في حي الروضة وحي النخيل"
    )
    near = base.replace("النخيل", "الياسمين")
    other = "بلغ مخزون الخزانات واحدا وأربعين في المائة من السعة في التاسع من سبتمبر"
    assert near_duplicates([base, other, near], threshold=0.8) == {2: 0}
    assert near_duplicates([base, other], threshold=0.5) == {}
    # the same text with harakat, tatweel and another hamza spelling is a duplicate
    vocalised = base.replace("جددت", "جَدَّدَت").replace("الهيئة", "الهـيئة")
    vocalised = vocalised.replace("أنابيب", "انابيب")
    assert near_duplicates([base, vocalised], threshold=0.99) == {1: 0}


def test_near_duplicates_are_deterministic_across_processes():
    """SHA-1 shingle hashes and a fixed seed: PYTHONHASHSEED does not change the answer."""
    texts = _corpus(150, 40, seed=3)
    code = (
        "import json, sys; from llmops.quality import near_duplicates; "
        "print(json.dumps(near_duplicates(json.load(sys.stdin), threshold=0.9)))"
    )
    results = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(texts), env=env,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results.add(out.stdout)
    assert len(results) == 1
    expected = {int(k): v for k, v in json.loads(results.pop()).items()}
    assert near_duplicates(texts, threshold=0.9) == expected
    assert expected  # the corpus has near-duplicates above 0.9


def test_lsh_bands_favour_recall_at_the_threshold():
    for threshold in (0.5, 0.8, 0.9, 0.99):
        bands, rows = lsh_bands(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99
    with pytest.raises(ValueError, match="threshold"):
        near_duplicates(["a b", "a b"], threshold=0.0)


def test_embeddings_suite_derives_dimension_and_norm_from_vectors():
    import numpy as np

    rng = np.random.default_rng(0)
    unit = [v / np.linalg.norm(v) for v in rng.normal(size=(3, 384))]
    df = pd.DataFrame({"chunk_id": ["a", "b", "c"], "vector": unit})
    assert run_suite("embeddings", df, {"dim": 384}).success
    bad = pd.DataFrame({"chunk_id": ["a", "b"], "vector": [unit[0], np.ones(768)]})
    result = run_suite("embeddings", bad, {"dim": 384})
    assert not result.success
    assert {f["column"] for f in result.failed} == {"dim", "norm"}
    assert "dim" in result.markdown()
