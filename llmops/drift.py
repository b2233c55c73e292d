"""Has the data moved away from what the champion was trained on? Two-sample drift tests.

Reference = the texts the champion was trained on; current = what arrived since (new chunks,
served prompts). Three views, each a proper two-sample test with a null calibrated to the sample
sizes, so a random resample of the reference does not raise an alarm:

- ``embedding_mmd``: maximum mean discrepancy between sentence embeddings (RBF kernel, median
  heuristic bandwidth) with a permutation p-value: sensitive to a change of topic or language.
- ``length_psi``: population stability index of text length on the reference's quantile bins.
- ``language_psi``: PSI of the language mix (``llmops.arabic.detect_language``).

PSI's customary 0.25 "major shift" line is meaningless on small samples (under no drift its
expected value is about (k-1)(1/n_ref + 1/n_cur)), so the threshold used is the larger of 0.25
and the 99th percentile of that chi-square approximation; the report says which.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIN_TEXTS = 8


@dataclass
class DriftTest:
    name: str
    statistic: float
    drift: bool
    p_value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None and v != ""}
        return out


@dataclass
class DriftReport:
    drift: bool
    n_reference: int
    n_current: int
    tests: list[DriftTest] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "tests": [t.to_dict() for t in self.tests],
        }

    def markdown(self) -> str:
        from llmops.text import markdown_table

        rows = [["test", "statistic", "p-value", "threshold", "drift"]]
        for t in self.tests:
            p = "" if t.p_value is None else f"{t.p_value:.4f}"
            thr = "" if t.threshold is None else f"{t.threshold:.4f}"
            rows.append([t.name, f"{t.statistic:.4f}", p, thr, "**yes**" if t.drift else "no"])
        lines = [markdown_table(rows)]
        lines.append(f"\nreference {self.n_reference} texts, current {self.n_current} texts: "
                     f"{'DRIFT' if self.drift else 'no drift'}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Thresholds:
    mmd_alpha: float = 0.01  # permutation test level for the embedding MMD
    psi_min: float = 0.25  # the customary "major shift" PSI, raised on small samples
    psi_null_quantile: float = 0.99
    length_bins: int = 5
    permutations: int = 500
    max_embedded: int = 2000  # texts per side in the embedding test (seeded subsample)
    seed: int = 0


# --------------------------------------------------------------------------- tests


def _squared_distances(x: Any) -> Any:
    import numpy as np

    sq = (x * x).sum(axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)


def mmd_permutation_test(
    reference: Any, current: Any, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """Unbiased MMD^2 between two embedding samples (RBF kernel, median-distance bandwidth)
    and its permutation p-value.

    Each permutation's statistic is a quadratic form of the pooled Gram matrix with the
    relabelled membership vectors, so all permutations are one matrix product (BLAS) instead
    of hundreds of sub-matrix copies.
    """
    import numpy as np

    x, y = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be 2-D with one width, got {x.shape} and {y.shape}")
    pooled = np.vstack([x, y])
    d2 = _squared_distances(pooled)
    positive = d2[np.triu_indices_from(d2, k=1)]
    positive = positive[positive > 0]
    gamma = 1.0 / (2 * float(np.median(positive))) if positive.size else 1.0
    k = np.exp(-gamma * d2)
    n, m = len(x), len(y)
    rng = np.random.default_rng(seed)
    labels = np.zeros((n + m, permutations + 1))
    labels[:n, 0] = 1.0  # column 0: the observed split; the others: random relabellings
    for j in range(1, permutations + 1):
        labels[rng.permutation(n + m)[:n], j] = 1.0
    a, b = labels, 1.0 - labels
    ka, kb = k @ a, k @ b
    # unbiased: drop the kernel's diagonal (k(x, x) = 1) from the within-sample sums
    within_a = ((a * ka).sum(axis=0) - n) / (n * (n - 1))
    within_b = ((b * kb).sum(axis=0) - m) / (m * (m - 1))
    across = (a * kb).sum(axis=0) / (n * m)
    stats = within_a + within_b - 2 * across
    observed = float(stats[0])
    exceed = int((stats[1:] >= observed).sum())
    return observed, (exceed + 1) / (permutations + 1)


def subsample(texts: Sequence[str], cap: int, seed: int = 0) -> list[str]:
    """At most ``cap`` texts, a seeded uniform sample: still an i.i.d. sample of the same
    distribution, so the test stays valid; only its power drops. Keeps the Gram matrix (and
    the embedding cost) bounded on large corpora."""
    if len(texts) <= cap:
        return list(texts)
    import random

    return random.Random(seed).sample(list(texts), cap)


class CachedEmbedder:
    """Embeds only texts it has no vector for: the knowledge base already holds a vector for
    every chunk, so a re-run after one new document embeds that document's chunks only."""

    def __init__(self, encode: Callable[[list[str]], Any],
                 known: Mapping[str, Any] | None = None) -> None:
        self.encode = encode
        self.known: dict[str, Any] = dict(known or {})
        self.encoded = 0

    def __call__(self, texts: list[str]) -> Any:
        import numpy as np

        missing = sorted({t for t in texts if t not in self.known})
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self.known[text] = vector
            self.encoded += len(missing)
        return np.asarray([self.known[t] for t in texts], dtype=float)


def _psi(ref_counts: Sequence[float], cur_counts: Sequence[float]) -> float:
    """PSI with add-one-half (Jeffreys) smoothing: a category seen once on one side only must
    not weigh like a vanished population, as a fixed epsilon floor makes it."""
    k = len(ref_counts)
    ref_total, cur_total = sum(ref_counts) + 0.5 * k, sum(cur_counts) + 0.5 * k
    value = 0.0
    for r, c in zip(ref_counts, cur_counts, strict=True):
        p, q = (r + 0.5) / ref_total, (c + 0.5) / cur_total
        value += (q - p) * math.log(q / p)
    return value


def _psi_threshold(n_ref: int, n_cur: int, categories: int, th: Thresholds) -> float:
    """PSI (a symmetrised KL) ~ (1/n_ref + 1/n_cur) * chi2(k-1) under no drift."""
    from scipy import stats

    null = (1 / n_ref + 1 / n_cur) * stats.chi2.ppf(th.psi_null_quantile, max(1, categories - 1))
    return max(th.psi_min, float(null))


def length_psi(reference: Sequence[str], current: Sequence[str], th: Thresholds) -> DriftTest:
    import numpy as np

    ref = np.array([len(t) for t in reference], dtype=float)
    cur = np.array([len(t) for t in current], dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, th.length_bins + 1))[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    value = _psi(ref_counts.tolist(), cur_counts.tolist())
    threshold = _psi_threshold(len(ref), len(cur), len(edges) + 1, th)
    return DriftTest("length_psi", value, value > threshold, threshold=threshold,
                     detail=f"median length {np.median(ref):.0f} -> {np.median(cur):.0f} chars")


def language_psi(
    reference: Sequence[str], current: Sequence[str], th: Thresholds,
    detect: Callable[[str], str] | None = None,
) -> DriftTest:
    if detect is None:
        from llmops.arabic import detect_language as detect
    ref, cur = Counter(map(detect, reference)), Counter(map(detect, current))
    langs = sorted(set(ref) | set(cur))
    value = _psi([ref[lang] for lang in langs], [cur[lang] for lang in langs])
    threshold = _psi_threshold(len(reference), len(current), len(langs), th)
    mix = ", ".join(f"{lang} {ref[lang]}->{cur[lang]}" for lang in langs)
    return DriftTest("language_psi", value, value > threshold, threshold=threshold, detail=mix)


def detect_drift(
    reference: Sequence[str],
    current: Sequence[str],
    embed: Callable[[list[str]], Any] | None = None,
    thresholds: Thresholds | None = None,
    detect_language: Callable[[str], str] | None = None,
) -> DriftReport:
    """Every test on two text samples; ``embed`` (texts -> vectors) enables the MMD test."""
    th = thresholds or Thresholds()
    reference = [t for t in reference if t and t.strip()]
    current = [t for t in current if t and t.strip()]
    for name, texts in (("reference", reference), ("current", current)):
        if len(texts) < MIN_TEXTS:
            raise ValueError(f"{name}: {len(texts)} non-empty texts, need at least {MIN_TEXTS}")
    tests: list[DriftTest] = []
    if embed is not None:
        ref_sample = subsample(reference, th.max_embedded, th.seed)
        cur_sample = subsample(current, th.max_embedded, th.seed + 1)
        stat, p = mmd_permutation_test(
            embed(ref_sample), embed(cur_sample), th.permutations, th.seed
        )
        tests.append(DriftTest("embedding_mmd", stat, p < th.mmd_alpha, p_value=p,
                               threshold=th.mmd_alpha))
    tests.append(length_psi(reference, current, th))
    tests.append(language_psi(reference, current, th, detect_language))
    return DriftReport(any(t.drift for t in tests), len(reference), len(current), tests)


def score_decay(
    reference: Sequence[float], current: Sequence[float], min_drop: float = 0.05,
    alpha: float = 0.01, name: str = "score_decay",
) -> DriftTest:
    """Has the champion's per-sample score fallen since it was promoted?

    ``reference``: its per-sample scores when it became champion; ``current``: the latest
    (nightly) evaluation on recent data. Drift when the mean fell by more than ``min_drop``
    (a drop users would notice) and a one-sided Welch t-test says the fall is not noise
    (p < ``alpha``). Unpaired on purpose: the test split and the retrieved contexts change as
    documents arrive, so samples are not the same questions.
    """
    import numpy as np
    from scipy import stats

    ref = np.asarray([v for v in reference if v is not None and math.isfinite(v)], dtype=float)
    cur = np.asarray([v for v in current if v is not None and math.isfinite(v)], dtype=float)
    if len(ref) < 2 or len(cur) < 2:
        raise ValueError(f"{name}: need >= 2 finite scores per side, got {len(ref)} and "
                         f"{len(cur)}")
    drop = float(ref.mean() - cur.mean())
    if np.ptp(np.concatenate([ref, cur])) == 0:
        p = 1.0  # identical constant scores: nothing fell
    else:
        p = float(stats.ttest_ind(ref, cur, equal_var=False, alternative="greater").pvalue)
    return DriftTest(name, drop, drop > min_drop and p < alpha, p_value=p, threshold=min_drop)


def plot_report(
    report: DriftReport, reference: Sequence[str], current: Sequence[str], path: str | Path
) -> Path:
    """The drift report as a PNG: text-length histograms of both windows, and each test's
    statistic (or 1 - p) against its threshold, so a reviewer sees what moved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lengths, tests) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    lengths.hist([len(t) for t in reference], bins=30, alpha=0.6, density=True,
                 label=f"reference ({len(reference)})")
    lengths.hist([len(t) for t in current], bins=30, alpha=0.6, density=True,
                 label=f"current ({len(current)})")
    lengths.set_xlabel("characters per text")
    lengths.legend()
    names = [t.name for t in report.tests]
    values = [1 - t.p_value if t.p_value is not None else t.statistic for t in report.tests]
    limits = [1 - t.threshold if t.p_value is not None and t.threshold is not None
              else (t.threshold or 0.0) for t in report.tests]
    colors = ["tab:red" if t.drift else "tab:green" for t in report.tests]
    tests.barh(names, values, color=colors)
    tests.scatter(limits, names, marker="|", s=400, color="black", label="threshold")
    tests.set_xlabel("statistic (PSI, drop) or 1 - p-value")
    tests.legend(loc="lower right")
    fig.suptitle("DRIFT" if report.drift else "no drift")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- corpora on disk


def load_texts(source: str | Path) -> list[str]:
    """A folder of ``.txt`` files, or a JSONL / Parquet file with a ``text`` column."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ValueError(f"{path}: folder has no .txt files")
        return [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        texts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not JSON ({err.msg})") from err
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}:{n}: no string 'text' field")
            texts.append(row["text"])
        return texts
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise ValueError(f"{path}: no 'text' column (columns: {table.column_names})")
        return [t for t in table.column("text").to_pylist() if isinstance(t, str)]
    raise ValueError(f"{path}: expected a folder of .txt files, .jsonl or .parquet")


# --------------------------------------------------------------------------- the champion's window


@dataclass
class DriftWindow:
    """Reference (what the champion was trained on) and current (everything since) texts."""

    champion_version: str
    reference: list[str]
    current: list[str]
    current_ids: list[str]  # chunk ids and request ids: what makes this window this window

    @property
    def key(self) -> str:
        """Content hash of the window: one drift event = one key = one retraining run."""
        import hashlib

        digest = hashlib.sha256(self.champion_version.encode())
        for item in sorted(self.current_ids):
            digest.update(b"\0" + item.encode())
        return digest.hexdigest()[:16]


def drift_window(
    champion_version: str,
    trained_doc_ids: set[str],
    chunks: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]] = (),
) -> DriftWindow:
    """Split the knowledge base into the champion's training documents and the rest, and add
    the prompts users sent to the served champion (the request log) to the current side."""
    reference = [str(c["text"]) for c in chunks if c["doc_id"] in trained_doc_ids]
    fresh = [c for c in chunks if c["doc_id"] not in trained_doc_ids]
    served = [r for r in requests if r.get("prompt")]
    return DriftWindow(
        champion_version=str(champion_version),
        reference=reference,
        current=[str(c["text"]) for c in fresh] + [str(r["prompt"]) for r in served],
        current_ids=[str(c["chunk_id"]) for c in fresh]
        + [f"request:{r.get('request_id', '')}" for r in served],
    )
