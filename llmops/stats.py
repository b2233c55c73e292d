"""Paired A/B statistics: the evidence a sceptical ML lead accepts before a model is promoted.

Champion (a) and challenger (b) answer the *same* samples, so every test here is paired: rows
are matched by ``sample_id`` and only the per-sample differences carry information. An unpaired
test on paired data throws away the correlation between the two answers to one question and
either misses real differences or invents them; none is offered.

Per metric: mean difference ``diff = b - a`` with a paired-bootstrap CI, Wilcoxon signed-rank
(scores) or exact McNemar (0/1 pass/fail columns), an effect size, wins/ties/losses, Holm's
correction across the metrics of one comparison, and the minimum detectable effect at this n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ID = "sample_id"


@dataclass
class MetricComparison:
    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of b - a
    ci_low: float
    ci_high: float
    test: str  # "wilcoxon" | "mcnemar" | "none" (no non-zero difference / too few pairs)
    p_value: float
    p_adjusted: float
    significant: bool
    effect_size: float
    effect_size_name: str
    wins: int  # b better than a (by the metric's direction)
    ties: int
    losses: int
    mde: float  # smallest mean difference detectable with 80% power at this n
    higher_is_better: bool = True
    n_dropped: int = 0  # pairs with a missing value in this metric

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}


@dataclass
class PairedReport:
    comparisons: list[MetricComparison]
    alpha: float
    n_paired: int
    unmatched_a: list[str] = field(default_factory=list)
    unmatched_b: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "n_paired": self.n_paired,
            "unmatched_a": len(self.unmatched_a),
            "unmatched_b": len(self.unmatched_b),
            "metrics": [c.to_dict() for c in self.comparisons],
        }


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- building blocks


def is_binary(values: Sequence[float]) -> bool:
    """A pass/fail column: every (non-missing) value is 0 or 1."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return arr.size > 0 and bool(np.isin(arr, (0.0, 1.0)).all())


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of mean(b - a), resampling *pairs* (the pairing is the point)."""
    import numpy as np

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0:
        return math.nan, math.nan
    if d.size == 1 or np.all(d == d[0]):
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def wilcoxon_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Wilcoxon signed-rank on the pairs (two-sided); all-zero differences give p = 1."""
    import numpy as np
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0 or np.all(d == 0):
        return 0.0, 1.0
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def mcnemar_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Exact McNemar: a binomial test on the discordant pairs (b passes where a fails and v.v.).

    Returns (number of pairs only b passed, p). The exact form is valid at any count, where the
    chi-square approximation is not for the small discordant counts evaluation sets have.
    """
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    only_b = int(((y == 1) & (x == 0)).sum())
    only_a = int(((x == 1) & (y == 0)).sum())
    if only_a + only_b == 0:
        return 0.0, 1.0
    return float(only_b), float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def minimum_detectable_effect(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest |mean difference| a two-sided paired test finds with ``power`` at this n.

    Normal approximation on the standard deviation of the differences: (z_{1-a/2} + z_power)
    * sd / sqrt(n). It tells a reader whether "no significant difference" means "no difference"
    or "too few samples to tell".
    """
    import numpy as np
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size < 2:
        return math.inf
    sd = float(d.std(ddof=1))
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd / math.sqrt(d.size))


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation: (R+ - R-) / (R+ + R-), in [-1, 1]."""
    import numpy as np
    from scipy import stats

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    pos, neg = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((pos - neg) / (pos + neg))


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' kappa for an items x categories matrix of rating counts (same raters per item)."""
    import numpy as np

    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(f"fleiss_kappa: need an items x categories matrix, got {table.shape}")
    n_raters = table.sum(axis=1)
    if not np.all(n_raters == n_raters[0]) or n_raters[0] < 2:
        raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
    n = n_raters[0]
    p_items = ((table * (table - 1)).sum(axis=1)) / (n * (n - 1))
    p_cats = table.sum(axis=0) / table.sum()
    p_bar, p_e = p_items.mean(), float((p_cats**2).sum())
    if math.isclose(p_e, 1.0):
        return 1.0  # every rating in one category: perfect (and trivial) agreement
    return float((p_bar - p_e) / (1 - p_e))


# --------------------------------------------------------------------------- comparison


def _pair(a: Any, b: Any, id_column: str) -> tuple[Any, list[str], list[str]]:
    for side, frame in (("a", a), ("b", b)):
        if id_column not in frame.columns:
            raise ValueError(
                f"table {side}: no {id_column!r} column (columns: {list(frame.columns)})"
            )
        dupes = frame[id_column][frame[id_column].duplicated()].astype(str).unique().tolist()
        if dupes:
            raise ValueError(f"table {side}: duplicate {id_column} values {dupes[:5]}")
    ids_a, ids_b = set(a[id_column].astype(str)), set(b[id_column].astype(str))
    left = a.assign(**{id_column: a[id_column].astype(str)})
    right = b.assign(**{id_column: b[id_column].astype(str)})
    merged = left.merge(right, on=id_column, suffixes=("__a", "__b"))
    return merged, sorted(ids_a - ids_b), sorted(ids_b - ids_a)


def _numeric_metrics(a: Any, b: Any, id_column: str) -> list[str]:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [
        c for c in a.columns
        if c != id_column and c in b.columns
        and (is_numeric_dtype(a[c]) or is_bool_dtype(a[c]))
        and (is_numeric_dtype(b[c]) or is_bool_dtype(b[c]))
    ]


def compare_paired(
    a: Any,
    b: Any,
    metrics: Sequence[str] | None = None,
    alpha: float = 0.05,
    id_column: str = DEFAULT_ID,
    n_boot: int = 10_000,
    seed: int = 0,
    higher_is_better: Mapping[str, bool] | None = None,
) -> PairedReport:
    """Paired comparison of two per-sample score tables (DataFrames), metric by metric."""
    import numpy as np
    import pandas as pd

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    merged, only_a, only_b = _pair(a, b, id_column)
    metrics = list(metrics) if metrics is not None else _numeric_metrics(a, b, id_column)
    directions = dict(higher_is_better or {})
    rows: list[MetricComparison] = []
    for metric in metrics:
        for side, frame in (("a", a), ("b", b)):
            if metric not in frame.columns:
                raise ValueError(f"table {side}: no metric column {metric!r}")
        col_a = pd.to_numeric(merged[f"{metric}__a"], errors="coerce")
        col_b = pd.to_numeric(merged[f"{metric}__b"], errors="coerce")
        both = (~col_a.isna()) & (~col_b.isna())
        if len(merged) and not both.any() and (
            merged[f"{metric}__a"].notna().any() or merged[f"{metric}__b"].notna().any()
        ):
            raise ValueError(f"metric {metric!r} is not numeric")
        x, y = col_a[both].to_numpy(float), col_b[both].to_numpy(float)
        up = directions.get(metric, True)
        binary = is_binary(np.concatenate([x, y])) if x.size else False
        if x.size == 0:
            stat_p, test = (0.0, 1.0), "none"
        elif binary:
            stat_p, test = mcnemar_test(x, y), "mcnemar"
        else:
            stat_p, test = wilcoxon_test(x, y), "wilcoxon"
        if x.size and np.all(x == y):
            test = "none"
        d = y - x
        better = d if up else -d
        if binary:
            b_only, a_only = int(((y == 1) & (x == 0)).sum()), int(((x == 1) & (y == 0)).sum())
            effect, effect_name = (b_only - a_only) / max(1, a_only + b_only), "cohens_g_x2"
        else:
            effect, effect_name = rank_biserial(x, y), "rank_biserial"
        lo, hi = paired_bootstrap_ci(x, y, alpha, n_boot, seed)
        rows.append(
            MetricComparison(
                metric=metric, n=int(x.size),
                mean_a=float(x.mean()) if x.size else math.nan,
                mean_b=float(y.mean()) if y.size else math.nan,
                diff=float(d.mean()) if d.size else math.nan,
                ci_low=lo, ci_high=hi, test=test, p_value=stat_p[1], p_adjusted=stat_p[1],
                significant=False, effect_size=float(effect), effect_size_name=effect_name,
                wins=int((better > 0).sum()), ties=int((better == 0).sum()),
                losses=int((better < 0).sum()),
                mde=minimum_detectable_effect(x, y, alpha),
                higher_is_better=up, n_dropped=int((~both).sum()),
            )
        )
    for row, p_adj in zip(rows, holm([r.p_value for r in rows]), strict=True):
        row.p_adjusted = p_adj
        row.significant = bool(p_adj < alpha and row.test != "none")
    return PairedReport(rows, alpha, len(merged), only_a, only_b)


def read_table(path: str | Path) -> Any:
    """A per-sample score table from CSV or Parquet; the error names the file."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as err:  # pandas/pyarrow raise many types for a bad file
        raise ValueError(f"{p}: cannot read as {'Parquet' if 'parq' in p.suffix else 'CSV'}: "
                         f"{err}") from err


def compare_tables(
    path_a: str | Path, path_b: str | Path, metrics: Sequence[str] | None = None,
    alpha: float = 0.05, id_column: str = DEFAULT_ID,
) -> PairedReport:
    """``compare_paired`` on two files; errors name the file they come from."""
    a, b = read_table(path_a), read_table(path_b)
    try:
        return compare_paired(a, b, metrics=metrics, alpha=alpha, id_column=id_column)
    except ValueError as err:
        message = str(err).replace("table a", str(path_a)).replace("table b", str(path_b))
        raise ValueError(message) from err


# --------------------------------------------------------------------------- report


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def markdown_table(report: PairedReport) -> str:
    head = (
        "| metric | n | champion | challenger | diff (b-a) | 95% CI | test | p | p (Holm) | "
        "effect | W/T/L | MDE |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for c in report.comparisons:
        mark = " **" if c.significant else " "
        lines.append(
            f"|{mark}{c.metric}{mark.strip() and '** '}| {c.n} | {_fmt(c.mean_a)} | "
            f"{_fmt(c.mean_b)} | {_fmt(c.diff)} | [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] | "
            f"{c.test} | {_fmt(c.p_value, 3)} | {_fmt(c.p_adjusted, 3)} | "
            f"{_fmt(c.effect_size, 3)} ({c.effect_size_name}) | {c.wins}/{c.ties}/{c.losses} | "
            f"{_fmt(c.mde, 3)} |"
        )
    lines.append(
        f"\n{report.n_paired} paired samples, alpha {report.alpha:g}; unmatched ids: "
        f"{len(report.unmatched_a)} only in a, {len(report.unmatched_b)} only in b."
    )
    return "\n".join(lines)


def plot_differences(report: PairedReport, path: str | Path) -> Path:
    """Per-metric mean difference with its CI, one row per metric (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [c for c in report.comparisons if math.isfinite(c.diff)]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(rows))))
    for i, c in enumerate(rows):
        color = "tab:green" if c.significant and (c.diff > 0) == c.higher_is_better else (
            "tab:red" if c.significant else "tab:gray")
        ax.errorbar(c.diff, i, xerr=[[c.diff - c.ci_low], [c.ci_high - c.diff]], fmt="o",
                    color=color, capsize=4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [c.metric for c in rows])
    ax.set_xlabel("challenger - champion (mean, 95% paired bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
