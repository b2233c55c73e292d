"""Timing helpers shared by the benches (they run as scripts, with bench/ on sys.path)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeats: int = 1) -> float:
    """Fastest wall time of ``repeats`` calls: the least disturbed by a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in (0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
