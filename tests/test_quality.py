"""Great Expectations suites from configs/expectations, and near-duplicate detection."""

from __future__ import annotations

import pandas as pd
import pytest

from llmops.quality import jaccard, load_suite, near_duplicate_ratio, run_suite

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
