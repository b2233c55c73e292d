"""llmops.stats: known values (scipy, textbook examples), simulated A/Bs and table pairing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from llmops import stats

ALPHA = 0.05


# --------------------------------------------------------------------------- primitives


def test_is_binary() -> None:
    assert stats.is_binary([0, 1, 1, 0])
    assert stats.is_binary([1.0, np.nan, 0.0])
    assert stats.is_binary([True, False])
    assert not stats.is_binary([0, 0.5, 1])
    assert not stats.is_binary([])
    assert not stats.is_binary([np.nan])


def test_wilcoxon_matches_scipy_and_handles_all_zero_differences() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=40)
    b = a + rng.normal(0.3, 1.0, size=40)
    stat, p = stats.wilcoxon_test(a, b)
    ref = sps.wilcoxon(b - a)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert stats.wilcoxon_test(a, a) == (0.0, 1.0)


def test_mcnemar_exact_and_chi_square_against_hand_values() -> None:
    # 7 pairs where a passes and b fails, 2 the other way: exact two-sided binomial
    a = [1] * 7 + [0] * 2 + [1] * 5 + [0] * 6
    b = [0] * 7 + [1] * 2 + [1] * 5 + [0] * 6
    stat, p = stats.mcnemar_test(a, b)
    assert stat == 2 and p == pytest.approx(2 * (1 + 9 + 36) / 2**9)
    # Wikipedia's McNemar example (b=121, c=59): continuity-corrected chi-square = 61^2/180
    a = [1] * 101 + [1] * 121 + [0] * 59 + [0] * 33
    b = [1] * 101 + [0] * 121 + [1] * 59 + [0] * 33
    stat, p = stats.mcnemar_test(a, b)
    assert stat == pytest.approx(61**2 / 180) and p == pytest.approx(sps.chi2.sf(61**2 / 180, 1))
    assert p < 1e-5
    assert stats.mcnemar_test([1, 0, 1], [1, 0, 1]) == (0.0, 1.0)
    assert stats.cohens_g([0, 0, 0, 1], [1, 1, 1, 1]) == pytest.approx(0.5)


def test_holm_hand_example() -> None:
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> max(0.06, 0.04)=0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.5, float("nan"), 0.9])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)
    assert stats.holm([]) == []


def test_paired_bootstrap_ci_agrees_with_normal_theory_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    b = a + rng.normal(0.2, 1.0, size=400)
    low, high = stats.paired_bootstrap_ci(a, b, n_boot=4000, seed=1)
    d = b - a
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert low == pytest.approx(d.mean() - 1.96 * se, abs=0.3 * se)
    assert high == pytest.approx(d.mean() + 1.96 * se, abs=0.3 * se)
    assert (low, high) == stats.paired_bootstrap_ci(a, b, n_boot=4000, seed=1)
    assert stats.paired_bootstrap_ci([1, 2], [2, 3]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in stats.paired_bootstrap_ci([], []))
    assert all(math.isnan(v) for v in stats.paired_bootstrap_ci([0.5], [0.7]))
    with pytest.raises(ValueError, match="length"):
        stats.paired_bootstrap_ci([1, 2], [1])


def test_rank_biserial_bounds() -> None:
    assert stats.rank_biserial([0, 0, 0], [1, 2, 3]) == 1.0
    assert stats.rank_biserial([1, 2, 3], [0, 0, 0]) == -1.0
    assert stats.rank_biserial([1, 2], [1, 2]) == 0.0


def test_fleiss_kappa_wikipedia_example() -> None:
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert stats.fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert stats.fleiss_kappa([[3, 0], [3, 0]]) == 1.0
    with pytest.raises(ValueError, match="same number"):
        stats.fleiss_kappa([[2, 1], [1, 1]])


def test_krippendorff_alpha_nominal_textbook_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": nominal alpha = 0.743
    n = None
    ratings = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    assert stats.krippendorff_alpha_nominal(ratings) == pytest.approx(0.743, abs=5e-4)
    assert stats.krippendorff_alpha_nominal([[1, 2, 1], [1, 2, 1]]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- simulation


def _scores(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample difficulty shared by both candidates (the pairing), plus own noise."""
    difficulty = rng.normal(0, 1.0, n)
    a = difficulty + rng.normal(0, 0.5, n)
    b = difficulty + shift + rng.normal(0, 0.5, n)
    return a, b


def _binary(rng: np.random.Generator, n: int, lift: float) -> tuple[np.ndarray, np.ndarray]:
    p = rng.uniform(0.2, 0.8, n)  # per-sample difficulty
    a = (rng.random(n) < p).astype(float)
    return a, (rng.random(n) < np.clip(p + lift, 0, 1)).astype(float)


def test_no_true_difference_false_promotion_rate_stays_below_alpha() -> None:
    """The promotion gate ("significant improvement" / CI above 0) under the null."""
    rng = np.random.default_rng(2024)
    sims, n = 400, 80
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)
    rates = {}
    for kind, make in (("scores", _scores), ("pass_fail", _binary)):
        sig = promoted = ci_above = 0
        for i in range(sims):
            a, b = make(rng, n, 0.0)
            c = stats.compare_metric("m", a, b, alpha=ALPHA, n_boot=400, seed=i)
            sig += c.significant or c.p_value < ALPHA
            promoted += c.p_value < ALPHA and c.diff > 0
            ci_above += c.ci_low > 0
        rates[kind] = (sig / sims, promoted / sims, ci_above / sims)
    print(f"\nnull A/Bs ({sims} each, n={n}): two-sided rejection / false promotion / CI>0 "
          f"rates {rates}")
    for two_sided, false_promotion, ci_above in rates.values():
        assert two_sided <= ALPHA + slack
        assert false_promotion <= ALPHA + slack
        assert ci_above <= ALPHA + slack


def test_moderate_true_difference_is_detected_most_of_the_time() -> None:
    rng = np.random.default_rng(7)
    sims, n = 300, 100
    hits = binary_hits = 0
    for i in range(sims):
        a, b = _scores(rng, n, 0.25)  # d_z = 0.25 / (0.5 * sqrt 2) ~= 0.35
        c = stats.compare_metric("m", a, b, alpha=ALPHA, n_boot=300, seed=i)
        hits += c.p_value < ALPHA and c.diff > 0
        a, b = _binary(rng, 4 * n, 0.1)
        c = stats.compare_metric("pass", a, b, alpha=ALPHA, n_boot=300, seed=i)
        binary_hits += c.test == "mcnemar" and c.p_value < ALPHA and c.diff > 0
    power, binary_power = hits / sims, binary_hits / sims
    print(f"\npower: scores d_z~0.35 n={n}: {power:.3f}; pass/fail +10pp n={4 * n}: "
          f"{binary_power:.3f}")
    assert power >= 0.85
    assert binary_power >= 0.8


def test_minimum_detectable_effect_means_about_80_percent_power() -> None:
    rng = np.random.default_rng(11)
    a, b = _scores(rng, 120, 0.0)
    mde = stats.minimum_detectable_effect(a, b)
    expected = (1.959964 + 0.841621) * (b - a).std(ddof=1) / math.sqrt(120)
    assert mde == pytest.approx(expected, rel=1e-4)
    hits = 0
    sims = 300
    for _ in range(sims):
        a, b = _scores(rng, 120, mde)
        hits += stats.wilcoxon_test(a, b)[1] < ALPHA
    print(f"\npower at the MDE ({mde:.3f}): {hits / sims:.3f}")
    assert 0.65 <= hits / sims <= 0.93
    assert math.isnan(stats.minimum_detectable_effect([1.0], [2.0]))


def test_correlated_pairs_only_a_paired_test_sees_the_difference() -> None:
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, 1.0, 150)  # big between-sample spread hides a small shift
    a = difficulty + rng.normal(0, 0.1, 150)
    b = difficulty + 0.1 + rng.normal(0, 0.1, 150)
    unpaired = sps.mannwhitneyu(a, b).pvalue
    _, paired = stats.wilcoxon_test(a, b)
    frame_a = pd.DataFrame({"sample_id": range(150), "score": a})
    frame_b = pd.DataFrame({"sample_id": range(150), "score": b})
    c = stats.compare_paired(frame_a, frame_b, n_boot=2000).comparisons[0]
    print(f"\ncorrelated pairs: Mann-Whitney p={unpaired:.3f}, paired Wilcoxon p={paired:.2e}")
    assert unpaired > 0.2
    assert paired < 1e-6 and c.significant and c.direction == "improvement" and c.ci_low > 0


# --------------------------------------------------------------------------- tables


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 60
    a = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)],
        "f1": rng.uniform(0.2, 0.8, n),
        "exact_match": rng.integers(0, 2, n),
        "latency_ms": rng.gamma(2, 100, n),
        "answer": ["text"] * n,
    })
    b = a.copy()
    b["sample_id"] = [f"s{i}" for i in range(3, n + 3)]  # s0-s2 only in a, s60-s62 only in b
    b["f1"] = rng.uniform(0.4, 1.0, n)
    b["latency_ms"] = rng.gamma(2, 50, n)
    b["answer"] = "other"
    return a, b


def test_compare_paired_pairs_by_id_and_reports_what_it_could_not_pair() -> None:
    a, b = _tables()
    a.loc[5, "f1"] = np.nan
    b.loc[b["sample_id"] == "s7", "f1"] = np.nan
    report = stats.compare_paired(a, b, n_boot=1000)
    assert [c.metric for c in report.comparisons] == ["f1", "exact_match", "latency_ms"]
    assert report.n_paired == 57
    assert report.unmatched_a == ["s0", "s1", "s2"] and report.unmatched_b == ["s60", "s61", "s62"]
    f1, em, lat = report.comparisons
    assert f1.n == 55 and f1.n_dropped_nan == 2 and f1.test == "wilcoxon"
    assert em.test == "mcnemar" and em.effect_size_name == "cohens_g" and em.n == 57
    paired = a.set_index("sample_id").join(b.set_index("sample_id"), rsuffix="_b", how="inner")
    paired = paired.dropna(subset=["f1", "f1_b"])
    assert f1.mean_a == pytest.approx(paired["f1"].mean())
    assert f1.diff == pytest.approx((paired["f1_b"] - paired["f1"]).mean())
    assert f1.ci_low < f1.diff < f1.ci_high
    assert f1.wins + f1.ties + f1.losses == f1.n
    # latency: lower is better, so b's smaller latencies are wins and the direction is good
    assert not lat.higher_is_better and lat.diff < 0 and lat.wins > lat.losses
    assert lat.direction == "improvement"
    ps = [c.p_value for c in report.comparisons]
    assert [c.p_adjusted for c in report.comparisons] == pytest.approx(stats.holm(ps))
    assert all(c.significant == (c.p_adjusted < ALPHA) for c in report.comparisons)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["alpha"] == ALPHA and payload["n_unmatched_a"] == 3
    for key in ("metric", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "test",
                "p_value", "p_adjusted", "significant", "effect_size", "mde", "wins"):
        assert key in payload["comparisons"][0]


def test_compare_paired_honours_metrics_and_direction_overrides() -> None:
    a, b = _tables()
    report = stats.compare_paired(a, b, metrics=["latency_ms"], n_boot=500,
                                  higher_is_better={"latency_ms": True})
    (lat,) = report.comparisons
    assert lat.higher_is_better and lat.losses > lat.wins and lat.direction == "regression"


def test_compare_paired_all_missing_metric_is_reported_not_fatal() -> None:
    a, b = _tables()
    a["faithfulness"] = np.nan
    b["faithfulness"] = np.nan
    c = stats.compare_paired(a, b, metrics=["f1", "faithfulness"], n_boot=500).comparisons[1]
    assert c.n == 0 and c.n_dropped_nan == 57 and not c.significant
    assert c.to_dict()["p_value"] is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, b: (a.drop(columns="sample_id"), b), "table-a: no 'sample_id' column"),
        (lambda a, b: (a, pd.concat([b, b.head(2)])), "table-b: duplicate 'sample_id'"),
        (lambda a, b: (a.assign(f1=["x"] * len(a)), b), "table-a: column 'f1' is not numeric"),
        (lambda a, b: (a, b.drop(columns="f1")), "table-b: no column \\['f1'\\]"),
    ],
)
def test_bad_input_names_the_table_and_column(mutate, message: str) -> None:
    a, b = mutate(*_tables())
    with pytest.raises(ValueError, match=message):
        stats.compare_paired(a, b, metrics=["f1"], names=("table-a", "table-b"))


def test_compare_tables_reads_csv_and_parquet_with_mixed_id_types(tmp_path: Path) -> None:
    a = pd.DataFrame({"sample_id": [1, 2, 3, 4], "score": [0.1, 0.2, 0.3, 0.4]})
    b = pd.DataFrame({"sample_id": ["2", "3", "4", "5"], "score": [0.3, 0.5, 0.6, 0.9]})
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_parquet(tmp_path / "b.parquet")
    report = stats.compare_tables(tmp_path / "a.csv", tmp_path / "b.parquet")
    assert report.n_paired == 3 and report.unmatched_a == ["1"] and report.unmatched_b == ["5"]
    assert report.comparisons[0].diff == pytest.approx((0.1 + 0.2 + 0.2) / 3)
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ValueError, match=r"c\.txt: unsupported format"):
        stats.compare_tables(tmp_path / "a.csv", tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        stats.compare_tables(tmp_path / "missing.csv", tmp_path / "a.csv")


def test_markdown_table_and_plot(tmp_path: Path) -> None:
    report = stats.compare_paired(*_tables(), n_boot=500)
    md = stats.markdown_table(report)
    assert md.splitlines()[0].startswith("| metric | test | n |")
    assert len([line for line in md.splitlines() if line.startswith("| ")]) == 4
    assert "3 only in a, 3 only in b" in md
    png = stats.plot_differences(report, tmp_path / "plots" / "diff.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
