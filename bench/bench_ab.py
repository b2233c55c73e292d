"""A/B comparison throughput: offline judge panel (both answer orders) + paired statistics.

Synthetic samples (question, reference, contexts, two answers, the challenger's closer to the
reference) go through what ``ab_comparison`` does offline: per-sample scores for both answers,
the three offline judges each asked twice with the order swapped, consensus + Fleiss' kappa,
then ``llmops.stats.compare_paired`` (bootstrap CI, Wilcoxon / McNemar, Holm, MDE). Reports
samples per hour (target 100,000+; the A/B platform we follow does 10,000) and the cost relative
to a baseline measured in the same run: the paired statistics alone on precomputed scores.

    python bench/bench_ab.py [--quick] [--samples N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET_PER_HOUR = 100_000


def synthetic_samples(n: int, seed: int = 0) -> list:
    """Reference facts in a retrieved context; B keeps ~80% of them, A ~55% plus invented words."""
    import numpy as np

    from llmops.judges import JudgeSample

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    out = []
    for i in range(n):
        ref = list(rng.choice(vocab, size=14))
        ctx = ref + list(rng.choice(vocab, size=40))
        rng.shuffle(ctx)

        def answer(keep: float, ref: list = ref) -> str:
            words = [w if rng.random() < keep else str(rng.choice(vocab)) for w in ref]
            return "the answer is " + " ".join(words)

        out.append(JudgeSample(
            sample_id=f"s{i:06d}", question=f"what about {ref[0]} and {ref[1]}?",
            reference=" ".join(ref), contexts=[" ".join(ctx[:27]), " ".join(ctx[27:])],
            answer_a=answer(0.55), answer_b=answer(0.8)))
    return out


def score_tables(samples: list) -> tuple:
    """Per-sample metric tables for both answers (what evaluation writes to Parquet)."""
    import pandas as pd

    from llmops.judges import rouge_l, token_f1

    def table(attr: str):
        rows = []
        for s in samples:
            ans = getattr(s, attr)
            rows.append({"sample_id": s.sample_id, "token_f1": token_f1(ans, s.reference),
                         "rouge_l": rouge_l(ans, s.reference),
                         "exact_match": float(ans.strip() == s.reference.strip()),
                         "answer_has_ref_start": float(s.reference.split()[0] in ans)})
        return pd.DataFrame(rows)

    return table("answer_a"), table("answer_b")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=10_000)
    args = parser.parse_args()
    n = args.samples or (500 if args.quick else 2000)

    from llmops import stats
    from llmops.judges import JudgePanel

    samples = synthetic_samples(n)
    table_a, table_b = score_tables(samples[:50])  # warm-up (imports, rapidfuzz, scipy)
    stats.compare_paired(table_a, table_b, n_boot=200)
    table_a, table_b = score_tables(samples)

    # baseline: the paired statistics alone on precomputed per-sample scores
    t0 = time.perf_counter()
    base = stats.compare_paired(table_a, table_b, n_boot=args.n_boot)
    t_base = time.perf_counter() - t0

    # full offline A/B: scoring + judge panel (2 orders x 3 judges) + paired statistics
    t0 = time.perf_counter()
    table_a, table_b = score_tables(samples)
    t_scores = time.perf_counter() - t0
    result = JudgePanel.default().run(samples)
    t_panel = time.perf_counter() - t0 - t_scores
    report = stats.compare_paired(table_a, table_b, n_boot=args.n_boot)
    t_full = time.perf_counter() - t0

    def per_hour(seconds: float) -> float:
        return n / seconds * 3600

    print(f"samples: {n} synthetic, {len(report.comparisons)} metrics, n_boot={args.n_boot}, "
          f"judges: {', '.join(result.judges)} (each pair judged in both orders)")
    print(f"baseline, paired stats only : {per_hour(t_base):12,.0f} samples/hour ({t_base:.2f}s)")
    print(f"full offline A/B            : {per_hour(t_full):12,.0f} samples/hour ({t_full:.2f}s: "
          f"scores {t_scores:.2f}s, judge panel {t_panel:.2f}s, "
          f"stats {t_full - t_scores - t_panel:.2f}s)")
    ok = per_hour(t_full) >= TARGET_PER_HOUR
    print(f"full / baseline throughput  : {t_base / t_full:.3f}x "
          f"(the panel and scoring cost {t_full / t_base:.1f}x the statistics)")
    print(f"target {TARGET_PER_HOUR:,}/hour: {'OK' if ok else 'BELOW TARGET'} "
          f"({per_hour(t_full) / TARGET_PER_HOUR:.1f}x the target)")
    tf1 = report.comparison("token_f1")
    print(f"sanity: panel b_wins={result.b_wins} a_wins={result.a_wins} ties={result.ties} "
          f"kappa={result.agreement:.3f} failed={result.n_failed}; token_f1 diff={tf1.diff:.3f} "
          f"CI [{tf1.ci_low:.3f}, {tf1.ci_high:.3f}] p_holm={tf1.p_adjusted:.2g}")
    if base.comparison("token_f1").diff != tf1.diff or result.b_wins <= result.a_wins:
        print("UNEXPECTED: the better answers did not win")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
