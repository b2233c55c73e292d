"""Paired A/B statistics for per-sample score tables (champion ``a`` vs challenger ``b``).

Both candidates answer the same samples, so every test here is paired: rows are joined on the
sample id, the per-sample difference ``b - a`` is what is tested, and unmatched ids are counted
and reported rather than silently used. Scores get a Wilcoxon signed-rank test, 0/1 pass/fail
columns an (exact when small) McNemar test; the mean difference gets a paired bootstrap CI; the
p-values of one comparison are Holm-adjusted across its metrics; the minimum detectable effect
says how large a difference this sample size could have seen at all.

numpy/pandas/scipy/matplotlib are imported inside functions so importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Metrics where smaller is better (used for wins/losses and "improved" when not told).
LOWER_IS_BETTER_HINTS = ("latency", "_ms", "perplexity", "cost", "harm", "error", "tokens")


def _clean(value: Any) -> Any:
    """JSON-safe scalars: numpy -> python, NaN/inf -> None."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class MetricComparison:
    """One metric of a paired A/B. ``diff``, the CI and the effect size are in ``b - a``."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    # None when read back from stored JSON (NaN is stored as null) or not computed
    test: str = ""
    p_value: float | None = None
    p_adjusted: float | None = None
    significant: bool = False
    effect_size: float | None = None
    effect_size_name: str = ""
    wins: int = 0
    ties: int = 0
    losses: int = 0
    mde: float | None = None
    higher_is_better: bool = True
    n_dropped_nan: int = 0
    statistic: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MetricComparison:
        """Read back a :meth:`to_dict` (extra keys such as ``direction`` are derived)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})

    @property
    def direction(self) -> str:
        """``improvement`` / ``regression`` if significant, else ``none``."""
        if not self.significant or not math.isfinite(self.diff) or self.diff == 0:
            return "none"
        better = self.diff > 0 if self.higher_is_better else self.diff < 0
        return "improvement" if better else "regression"

    def to_dict(self) -> dict[str, Any]:
        out = {k: _clean(v) for k, v in asdict(self).items()}
        out["direction"] = self.direction
        return out


@dataclass
class PairedReport:
    """Every metric of one paired comparison, plus what could not be paired."""

    comparisons: list[MetricComparison]
    alpha: float
    n_paired: int
    unmatched_a: list[str] = field(default_factory=list)
    unmatched_b: list[str] = field(default_factory=list)
    names: tuple[str, str] = ("a", "b")

    def comparison(self, metric: str) -> MetricComparison | None:
        return next((c for c in self.comparisons if c.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "a": self.names[0],
            "b": self.names[1],
            "n_paired": self.n_paired,
            "n_unmatched_a": len(self.unmatched_a),
            "n_unmatched_b": len(self.unmatched_b),
            "unmatched_a": list(self.unmatched_a),
            "unmatched_b": list(self.unmatched_b),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


# --------------------------------------------------------------------------- primitives


def _pair_arrays(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired arrays differ in length: {x.size} vs {y.size}")
    return x, y


def is_binary(values: Any) -> bool:
    """True when every finite value is 0 or 1 (and there is at least one): a pass/fail column."""
    import numpy as np

    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    return bool(arr.size) and bool(np.isin(arr, (0.0, 1.0)).all())


def paired_bootstrap_ci(a: Any, b: Any, alpha: float = 0.05, n_boot: int = 10_000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile CI of mean(b - a), resampling *pairs* (keeps the pairing's correlation).

    NaN for fewer than two pairs.
    """
    import numpy as np

    x, y = _pair_arrays(a, b)
    d = y - x
    n = d.size
    if n < 2:  # one pair says nothing about the spread: no interval, not a zero-width one
        return float("nan"), float("nan")
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)  # bounded memory for large n
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)
        means[start:stop] = d[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def wilcoxon_test(a: Any, b: Any) -> tuple[float, float]:
    """Wilcoxon signed-rank test of b - a (zero differences dropped); all-zero -> (0, 1)."""
    import numpy as np
    from scipy import stats

    x, y = _pair_arrays(a, b)
    d = y - x
    d = d[np.isfinite(d)]
    if not np.any(d != 0):
        return 0.0, 1.0
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def _discordant(a: Any, b: Any) -> tuple[int, int]:
    """(a fails & b passes, a passes & b fails)."""
    x, y = _pair_arrays(a, b)
    return int(((x == 0) & (y == 1)).sum()), int(((x == 1) & (y == 0)).sum())


def mcnemar_test(a: Any, b: Any, exact_below: int = 25) -> tuple[float, float]:
    """McNemar's test on paired 0/1 outcomes.

    Exact (binomial on the discordant pairs) when there are fewer than ``exact_below`` of them,
    otherwise the continuity-corrected chi-square. Statistic: min discordant count (exact) or
    chi-square. No discordant pairs -> (0, 1).
    """
    from scipy import stats

    n01, n10 = _discordant(a, b)
    n = n01 + n10
    if n == 0:
        return 0.0, 1.0
    if n < exact_below:
        return float(min(n01, n10)), float(stats.binomtest(n01, n, 0.5).pvalue)
    chi2 = (abs(n01 - n10) - 1) ** 2 / n
    return float(chi2), float(stats.chi2.sf(chi2, 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and is not in the family)."""
    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    m = len(idx)
    out = [float("nan")] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def minimum_detectable_effect(a: Any, b: Any, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest |mean difference| a two-sided paired test at ``alpha`` detects with ``power``.

    Normal approximation on the observed spread of the paired differences:
    ``(z_{1-alpha/2} + z_{power}) * sd(b - a) / sqrt(n)``, in the metric's own units. NaN when
    fewer than two pairs or the differences have no spread (nothing to estimate it from).
    """
    import numpy as np
    from scipy import stats

    x, y = _pair_arrays(a, b)
    d = y - x
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0:
        return float("nan")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd / math.sqrt(d.size))


def rank_biserial(a: Any, b: Any) -> float:
    """Matched-pairs rank-biserial correlation of b - a: (R+ - R-) / (R+ + R-), in [-1, 1]."""
    import numpy as np
    from scipy import stats

    x, y = _pair_arrays(a, b)
    d = y - x
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def cohens_g(a: Any, b: Any) -> float:
    """Cohen's g for McNemar, signed: share of discordant pairs where b passes, minus 0.5."""
    n01, n10 = _discordant(a, b)
    return 0.0 if n01 + n10 == 0 else n01 / (n01 + n10) - 0.5


# --------------------------------------------------------------------------- tables


def _higher_is_better(metric: str, given: Mapping[str, bool] | None) -> bool:
    if given and metric in given:
        return bool(given[metric])
    name = metric.lower()
    return not any(h in name for h in LOWER_IS_BETTER_HINTS)


def _ids(frame: pd.DataFrame, id_column: str, name: str) -> pd.Series:
    if id_column not in frame.columns:
        raise ValueError(f"{name}: no {id_column!r} column (columns: {list(frame.columns)})")
    ids = frame[id_column]
    if ids.isna().any():
        raise ValueError(f"{name}: {int(ids.isna().sum())} rows with an empty {id_column!r}")
    ids = ids.astype(str)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{name}: duplicate {id_column!r} values {dup[:5]}"
                         f"{' ...' if len(dup) > 5 else ''} ({len(dup)} ids); pairing is ambiguous")
    return ids


def _numeric(frame: pd.DataFrame, column: str, name: str) -> pd.Series | None:
    """The column as float, or None when it is not numeric (text, mixed)."""
    import pandas as pd

    col = frame[column]
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    converted = pd.to_numeric(col, errors="coerce")
    bad = col.notna() & converted.isna()
    if bad.any():
        return None
    return converted.astype(float)


def _metric_columns(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str] | None,
                    id_column: str, names: tuple[str, str]) -> list[str]:
    if metrics:
        for frame, name in ((a, names[0]), (b, names[1])):
            missing = [m for m in metrics if m not in frame.columns]
            if missing:
                raise ValueError(f"{name}: no column {missing} (columns: {list(frame.columns)})")
            for m in metrics:
                if _numeric(frame, m, name) is None:
                    sample = frame[m].dropna().astype(str).head(3).tolist()
                    raise ValueError(f"{name}: column {m!r} is not numeric (e.g. {sample})")
        return list(dict.fromkeys(metrics))
    cols = [c for c in a.columns if c != id_column and c in b.columns
            and _numeric(a, c, names[0]) is not None and _numeric(b, c, names[1]) is not None
            and (a[c].notna().any() or b[c].notna().any())]
    if not cols:
        raise ValueError(f"{names[0]} / {names[1]}: no numeric metric column in common "
                         f"(columns: {list(a.columns)} / {list(b.columns)})")
    return cols


def compare_metric(metric: str, a: Any, b: Any, alpha: float = 0.05, n_boot: int = 10_000,
                   seed: int = 0, higher_is_better: bool = True) -> MetricComparison:
    """One metric, already paired (NaN pairs are dropped here and counted). Unadjusted p."""
    import numpy as np

    x, y = _pair_arrays(a, b)
    keep = np.isfinite(x) & np.isfinite(y)
    dropped = int((~keep).sum())
    x, y = x[keep], y[keep]
    n = int(x.size)
    binary = is_binary(np.concatenate([x, y]))
    nan = float("nan")
    if n == 0:
        return MetricComparison(metric, 0, nan, nan, nan, nan, nan,
                                "mcnemar" if binary else "wilcoxon", nan, nan, False, nan,
                                "cohens_g" if binary else "rank_biserial", 0, 0, 0, nan,
                                higher_is_better, dropped)
    if binary:
        stat, p = mcnemar_test(x, y)
        effect, effect_name, test = cohens_g(x, y), "cohens_g", "mcnemar"
    else:
        stat, p = wilcoxon_test(x, y)
        effect, effect_name, test = rank_biserial(x, y), "rank_biserial", "wilcoxon"
    low, high = paired_bootstrap_ci(x, y, alpha=alpha, n_boot=n_boot, seed=seed)
    d = y - x
    better = d > 0 if higher_is_better else d < 0
    worse = d < 0 if higher_is_better else d > 0
    return MetricComparison(
        metric=metric, n=n, mean_a=float(x.mean()), mean_b=float(y.mean()),
        diff=float(d.mean()), ci_low=low, ci_high=high, test=test, p_value=p, p_adjusted=p,
        significant=False, effect_size=effect, effect_size_name=effect_name,
        wins=int(better.sum()), ties=int((d == 0).sum()), losses=int(worse.sum()),
        mde=minimum_detectable_effect(x, y, alpha=alpha), higher_is_better=higher_is_better,
        n_dropped_nan=dropped, statistic=stat,
    )


def compare_paired(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str] | None = None,
                   alpha: float = 0.05, id_column: str = "sample_id", n_boot: int = 10_000,
                   seed: int = 0, higher_is_better: Mapping[str, bool] | None = None,
                   names: tuple[str, str] = ("a", "b")) -> PairedReport:
    """Pair two per-sample tables on ``id_column`` and compare every metric.

    ``metrics`` None means every numeric column both tables share (text columns are skipped);
    named metrics must exist and be numeric in both. ``names`` label the tables in errors.
    Significance is ``p_adjusted < alpha`` after Holm across the metrics.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    ids_a, ids_b = _ids(a, id_column, names[0]), _ids(b, id_column, names[1])
    cols = _metric_columns(a, b, metrics, id_column, names)
    set_a, set_b = set(ids_a), set(ids_b)
    common = sorted(set_a & set_b)
    fa = a.assign(**{id_column: ids_a.values}).set_index(id_column).loc[common]
    fb = b.assign(**{id_column: ids_b.values}).set_index(id_column).loc[common]
    comparisons = []
    for i, metric in enumerate(cols):
        xa = _numeric(fa, metric, names[0])
        xb = _numeric(fb, metric, names[1])
        comparisons.append(compare_metric(
            metric, xa.to_numpy(), xb.to_numpy(), alpha=alpha, n_boot=n_boot, seed=seed + i,
            higher_is_better=_higher_is_better(metric, higher_is_better)))
    for c, p_adj in zip(comparisons, holm([c.p_value for c in comparisons]), strict=True):
        c.p_adjusted = p_adj
        c.significant = bool(math.isfinite(p_adj) and p_adj < alpha)
    return PairedReport(comparisons, alpha, len(common), sorted(set_a - set_b),
                        sorted(set_b - set_a), names)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet score table; errors name the file."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(p)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except Exception as exc:  # parser errors: say which file
        raise ValueError(f"{p}: cannot read ({type(exc).__name__}: {exc})") from exc
    raise ValueError(f"{p}: unsupported format {suffix or '(none)'} (use .csv or .parquet)")


def compare_tables(path_a: str | Path, path_b: str | Path, metrics: Sequence[str] | None = None,
                   alpha: float = 0.05, id_column: str = "sample_id", n_boot: int = 10_000,
                   seed: int = 0, higher_is_better: Mapping[str, bool] | None = None
                   ) -> PairedReport:
    """``compare_paired`` on two files (CSV or Parquet), errors naming the file."""
    a, b = read_table(path_a), read_table(path_b)
    return compare_paired(a, b, metrics=metrics, alpha=alpha, id_column=id_column,
                          n_boot=n_boot, seed=seed, higher_is_better=higher_is_better,
                          names=(str(path_a), str(path_b)))


# --------------------------------------------------------------------------- agreement


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' kappa of an items x categories table of rating counts (same raters per item).

    1.0 when all ratings fall in one category (perfect, if degenerate, agreement).
    """
    import numpy as np

    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(f"fleiss_kappa: need a non-empty items x categories table, "
                         f"got shape {table.shape}")
    raters = table.sum(axis=1)
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
    n, items = raters[0], table.shape[0]
    p_i = ((table * table).sum(axis=1) - n) / (n * (n - 1))
    p_j = table.sum(axis=0) / (items * n)
    p_bar, p_e = p_i.mean(), float((p_j * p_j).sum())
    if math.isclose(p_e, 1.0):
        return 1.0
    return float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha_nominal(ratings: Any) -> float:
    """Krippendorff's alpha (nominal) of a raters x units matrix; None/NaN = missing rating.

    Units with fewer than two ratings are not pairable and are ignored. NaN when undefined.
    """
    from collections import Counter
    from itertools import permutations

    rows = [list(r) for r in ratings]
    if not rows:
        raise ValueError("krippendorff_alpha_nominal: no ratings")
    units = list(zip(*rows, strict=True))

    def present(v: Any) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    coincidence: Counter[tuple[Any, Any]] = Counter()
    for unit in units:
        values = [v for v in unit if present(v)]
        m = len(values)
        if m < 2:
            continue
        for i, j in permutations(range(m), 2):
            coincidence[(values[i], values[j])] += 1 / (m - 1)
    total = sum(coincidence.values())
    if total == 0:
        return float("nan")
    marginals: Counter[Any] = Counter()
    for (c, _), w in coincidence.items():
        marginals[c] += w
    observed = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = total * total - sum(v * v for v in marginals.values())  # sum n_c n_k, c != k
    if expected == 0:
        return 1.0
    return float(1 - (total - 1) * observed / expected)


# --------------------------------------------------------------------------- reporting


def _fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def markdown_table(report: PairedReport) -> str:
    """Per-metric table (a = baseline, b = candidate) with the pairing's bookkeeping below."""
    pct = round(100 * (1 - report.alpha))
    head = (f"| metric | test | n | mean a | mean b | diff (b-a) | {pct}% CI | p | p (Holm) "
            "| significant | effect | win/tie/loss | MDE |")
    lines = [head, "|" + "---|" * 13]
    for c in report.comparisons:
        sig = {"improvement": "yes (better)", "regression": "yes (worse)"}.get(c.direction, "no")
        lines.append(
            f"| {c.metric} | {c.test} | {c.n} | {_fmt(c.mean_a)} | {_fmt(c.mean_b)} "
            f"| {_fmt(c.diff)} | [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] | {_fmt(c.p_value, 3)} "
            f"| {_fmt(c.p_adjusted, 3)} | {sig} | {c.effect_size_name} {_fmt(c.effect_size, 3)} "
            f"| {c.wins}/{c.ties}/{c.losses} | {_fmt(c.mde, 3)} |")
    notes = [f"\n{report.n_paired} paired samples (by sample id), alpha {report.alpha}, "
             "Holm-adjusted across the metrics above."]
    if report.unmatched_a or report.unmatched_b:
        notes.append(f"Unmatched ids: {len(report.unmatched_a)} only in a, "
                     f"{len(report.unmatched_b)} only in b (not compared).")
    dropped = [f"{c.metric}: {c.n_dropped_nan}" for c in report.comparisons if c.n_dropped_nan]
    if dropped:
        notes.append("Pairs dropped for a missing value: " + ", ".join(dropped) + ".")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def plot_differences(report: PairedReport, path: str | Path) -> Path:
    """PNG: one panel per metric (own scale) with the mean difference b - a and its CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = report.comparisons
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(max(1, len(comps)), 1, figsize=(7, 0.9 + 0.75 * max(1, len(comps))),
                             squeeze=False)
    for ax, c in zip(axes[:, 0], comps, strict=False):
        ok = all(math.isfinite(v) for v in (c.diff, c.ci_low, c.ci_high))
        color = {"improvement": "tab:green", "regression": "tab:red"}.get(c.direction, "tab:gray")
        if ok:
            ax.errorbar([c.diff], [0], xerr=[[c.diff - c.ci_low], [c.ci_high - c.diff]],
                        fmt="o", color=color, capsize=5)
            span = max(abs(c.ci_low), abs(c.ci_high), abs(c.diff), 1e-12) * 1.3
            ax.set_xlim(-span, span)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks([])
        ax.set_ylabel(c.metric, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"n={c.n}  diff={_fmt(c.diff, 3)}  p_holm={_fmt(c.p_adjusted, 2)}",
                     fontsize=7, loc="right")
    fig.suptitle(f"b - a per metric, {round(100 * (1 - report.alpha))}% paired bootstrap CI",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
