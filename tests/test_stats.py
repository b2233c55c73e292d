"""Paired A/B statistics against known values, and their error rates by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from llmops import stats


def _frames(a, b, **extra):
    ids = [f"s{i}" for i in range(len(a))]
    return (pd.DataFrame({"sample_id": ids, "score": a, **extra}),
            pd.DataFrame({"sample_id": ids, "score": b, **extra}))


def test_wilcoxon_matches_scipy_and_zero_differences_give_p_1():
    rng = np.random.default_rng(1)
    a = rng.normal(size=30)
    b = a + rng.normal(0.3, 1, size=30)
    assert stats.wilcoxon_test(a, b)[1] == pytest.approx(sps.wilcoxon(b - a).pvalue)
    assert stats.wilcoxon_test(a, a) == (0.0, 1.0)


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    # 10 pairs only b passes, 2 only a passes, 8 concordant: p = P(Bin(12, .5) far from 6).
    a = [0] * 10 + [1] * 2 + [1] * 4 + [0] * 4
    b = [1] * 10 + [0] * 2 + [1] * 4 + [0] * 4
    stat, p = stats.mcnemar_test(a, b)
    assert stat == 10
    assert p == pytest.approx(2 * sum(sps.binom.pmf(k, 12, 0.5) for k in range(0, 3)))


def test_holm_hand_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_fleiss_kappa_textbook_example():
    """Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210."""
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    assert stats.fleiss_kappa(table) == pytest.approx(0.210, abs=0.001)
    with pytest.raises(ValueError, match="same number"):
        stats.fleiss_kappa([[1, 1], [3, 0]])


def test_compare_pairs_by_id_reports_unmatched_and_uses_the_right_test():
    rng = np.random.default_rng(2)
    a, b = _frames(rng.random(40), rng.random(40))
    a["passed"] = rng.integers(0, 2, 40)
    b["passed"] = rng.integers(0, 2, 40)
    b = b.iloc[5:].sample(frac=1, random_state=0)  # shuffled and 5 ids missing
    b = pd.concat([b, pd.DataFrame({"sample_id": ["extra"], "score": [0.5], "passed": [1]})])
    report = stats.compare_paired(a, b)
    by = {c.metric: c for c in report.comparisons}
    assert report.n_paired == 35 and len(report.unmatched_a) == 5
    assert report.unmatched_b == ["extra"]
    assert by["score"].test == "wilcoxon" and by["passed"].test == "mcnemar"
    merged = a.merge(b, on="sample_id")
    assert by["score"].diff == pytest.approx((merged.score_y - merged.score_x).mean())
    assert by["score"].ci_low <= by["score"].diff <= by["score"].ci_high
    assert by["score"].wins + by["score"].ties + by["score"].losses == 35
    assert all(c.p_adjusted >= c.p_value for c in report.comparisons)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="sample_id"), "no 'sample_id' column"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate sample_id"),
        (lambda f: f.assign(score="high"), "not numeric"),
    ],
)
def test_bad_tables_are_named(mutate, message):
    a, b = _frames([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=message):
        stats.compare_paired(a, mutate(b), metrics=["score"])


def test_only_a_paired_test_sees_a_small_shift_under_large_between_sample_variance():
    """Questions differ a lot in difficulty; the challenger is a little better on each."""
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0, 1.0, 60)
    a = difficulty + rng.normal(0, 0.05, 60)
    b = difficulty + 0.05 + rng.normal(0, 0.05, 60)
    report = stats.compare_paired(*_frames(a, b))
    assert report.comparisons[0].significant
    assert sps.mannwhitneyu(a, b).pvalue > 0.05  # the unpaired test sees nothing


def _false_and_true_promotions(effect: float, n_sim: int, n: int = 60) -> float:
    """Share of simulated A/Bs where the challenger is called significantly better."""
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(n_sim):
        base = rng.normal(0.5, 0.2, n)
        a = base + rng.normal(0, 0.1, n)
        b = base + effect + rng.normal(0, 0.1, n)
        c = stats.compare_paired(*_frames(a, b), n_boot=400).comparisons[0]
        hits += c.significant and c.diff > 0 and c.ci_low > 0
    return hits / n_sim


def test_false_promotion_rate_stays_at_or_below_alpha_and_power_is_high():
    n_sim = 300
    false_rate = _false_and_true_promotions(0.0, n_sim)
    # one-sided "better" calls at two-sided alpha=0.05: expected ~0.025; binomial slack on top
    assert false_rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n_sim), false_rate
    power = _false_and_true_promotions(0.07, 100)  # Cohen's d = 0.5 on the differences
    print(f"false promotion rate {false_rate:.3f} (alpha 0.05), power at d=0.5: {power:.2f}")
    assert power >= 0.8, power


def test_minimum_detectable_effect_shrinks_with_n():
    rng = np.random.default_rng(5)
    small = stats.minimum_detectable_effect(rng.random(20), rng.random(20))
    large = stats.minimum_detectable_effect(rng.random(2000), rng.random(2000))
    assert large < small / 5


def test_markdown_and_plot(tmp_path):
    rng = np.random.default_rng(6)
    report = stats.compare_paired(*_frames(rng.random(30), rng.random(30) + 0.2))
    assert "| score |" in stats.markdown_table(report).replace("**", "").replace("  ", " ")
    png = stats.plot_differences(report, tmp_path / "diff.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_compare_json_on_csv_and_parquet(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    rng = np.random.default_rng(7)
    a, b = _frames(rng.random(25), rng.random(25) + 0.3)
    a["passed"], b["passed"] = rng.integers(0, 2, 25), rng.integers(0, 2, 25)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.iloc[2:].to_parquet(tmp_path / "b.parquet")
    out = CliRunner().invoke(
        app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.parquet"), "--json"]
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["alpha"] == 0.05 and payload["n_paired"] == 23 and payload["unmatched_a"] == 2
    score = next(m for m in payload["metrics"] if m["metric"] == "score")
    for key in ("metric", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "test",
                "p_value", "p_adjusted", "significant", "effect_size"):
        assert key in score
    assert score["diff"] > 0 and score["significant"] is True
    only = CliRunner().invoke(app, ["compare", str(tmp_path / "a.csv"),
                                    str(tmp_path / "b.parquet"), "--metric", "passed", "--json"])
    assert [m["test"] for m in json.loads(only.stdout)["metrics"]] == ["mcnemar"]

    (tmp_path / "bad.csv").write_text("id,score\n1,0.3\n")
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "bad.csv")])
    assert bad.exit_code == 1 and "bad.csv" in bad.output and "sample_id" in bad.output
