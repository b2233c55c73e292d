"""Near-duplicate detection: datasketch MinHash + LSH against the exact O(n^2) Jaccard scan.

``llmops.quality.near_duplicates`` must find what the exact scan finds (recall; it confirms
every candidate with the exact Jaccard, so precision is 1 by construction) in far less time.
Texts: corpus sentences windows (English) and generated Arabic-script texts, plus copies with one
to three words replaced. Printed per size: duplicates found / true, recall, and time as a ratio
to the exact scan measured in the same run.

    python bench/bench_near_duplicates.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def corpus(n: int, seed: int = 0) -> list[str]:
    from tests.training_data import corpus_texts

    rng = random.Random(seed)
    words = [w for t in corpus_texts(max_pdf_pages=40) for w in re.findall(r"\w+", t)]
    arabic = "الهيئة المياه شبكة تقرير السنة محطة الضغط الأنابيب العدادات الفاقد".split()  # noqa: SIM905
    n_distinct = int(n * 0.8)
    texts = []
    for i in range(n_distinct):
        pool = arabic if i % 5 == 0 else words
        texts.append(" ".join(rng.choice(pool) for _ in range(rng.randint(40, 160))))
    while len(texts) < n:
        copy = rng.choice(texts[:n_distinct]).split()
        for _ in range(rng.randint(1, 3)):
            copy[rng.randrange(len(copy))] = rng.choice(words)
        texts.append(" ".join(copy))
    rng.shuffle(texts)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 texts only")
    parser.add_argument("--threshold", type=float, default=0.85)
    args = parser.parse_args()

    from llmops.quality import _shingles, jaccard, near_duplicates

    started = time.perf_counter()
    import datasketch  # noqa: F401  (imports scipy: paid once per process, not per call)

    print(f"threshold {args.threshold}; importing datasketch {time.perf_counter() - started:.1f}s")
    print(f"{'texts':>6} {'found':>6} {'true':>6} {'recall':>7} {'lsh s':>7} {'exact s':>8} "
          f"{'time ratio':>10}")  # fmt: skip
    for n in [1000] if args.quick else [1000, 3000]:
        texts = corpus(n)
        started = time.perf_counter()
        sets = [_shingles(t) for t in texts]
        truth = {
            i
            for i in range(len(sets))
            if sets[i] and any(jaccard(sets[i], sets[j]) >= args.threshold for j in range(i))
        }
        exact = time.perf_counter() - started
        started = time.perf_counter()
        found = near_duplicates(texts, threshold=args.threshold)
        lsh = time.perf_counter() - started
        assert set(found) <= truth, "a reported near-duplicate failed the exact check"
        recall = len(found) / len(truth) if truth else 1.0
        print(f"{n:6d} {len(found):6d} {len(truth):6d} {recall:7.3f} {lsh:7.2f} {exact:8.2f} "
              f"{lsh / exact:9.3f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
