"""Per-key token bucket: ``burst`` requests at once, refilled at ``rate_per_s``."""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    """Thread-safe buckets keyed by key id; ``take`` returns 0 or the seconds to wait."""

    def __init__(self, rate_per_s: float, burst: int, clock: object = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens; 0.0 when allowed, else the wait (s) before it would be."""
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            tokens, last = self._state.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._state[key] = (tokens - cost, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (cost - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
