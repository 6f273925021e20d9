"""Log-bucketed latency histograms (HDR-style): bounded memory, ~1 % relative precision.

Values are integer nanoseconds (from ``time.perf_counter_ns``); results are milliseconds.
Bucketing: values below 128 ns are exact; above, a value ``v`` with ``b = v.bit_length()`` falls in
bucket ``(b - 7) * 64 + (v >> (b - 7))``, i.e. 64 linear sub-buckets per power of two. A bucket's width
is at most 1/64 of its lower bound, so reporting its midpoint is within 1/128 (0.78 %) of any value
in it. 2 368 buckets cover 0 ns .. 2**42 ns (~73 min); larger values land in the last bucket (max
and mean stay exact). Percentiles use the nearest-rank definition (``numpy.percentile(...,
method="inverted_cdf")``) and are clamped to the exact min and max.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

SUB_BITS = 7  # 2**7 = 128 sub-buckets per octave, upper half used -> 64 per octave
_HALF = 1 << (SUB_BITS - 1)
MAX_BITS = 42  # values up to 2**42 ns (~73 min) are bucketed with full precision
N_BUCKETS = (MAX_BITS - SUB_BITS + 1) * _HALF + _HALF
_LAST = N_BUCKETS - 1
NS_PER_MS = 1_000_000.0
SUMMARY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "count")


def bucket_index(v: int) -> int:
    """Bucket of a non-negative integer value (see module docstring)."""
    shift = v.bit_length() - SUB_BITS
    if shift <= 0:
        return v
    i = (shift << 6) + (v >> shift)
    return i if i < N_BUCKETS else _LAST


def bucket_bounds(i: int) -> tuple[int, int]:
    """[low, high) of bucket i in ns."""
    if i < (1 << SUB_BITS):
        return i, i + 1
    q, r = divmod(i, _HALF)
    shift, sub = q - 1, r + _HALF
    return sub << shift, (sub + 1) << shift


class Histogram:
    """Latency histogram; ``record_ns`` is cheap and thread-safe (one lock, no allocation)."""

    __slots__ = ("_counts", "_lock", "count", "max_ns", "min_ns", "total_ns")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * N_BUCKETS
        self.count = 0
        self.total_ns = 0
        self.min_ns: int | None = None
        self.max_ns: int | None = None

    def record_ns(self, ns: int) -> None:
        """Record one duration in integer nanoseconds (negative values count as 0)."""
        v = int(ns)
        if v < 0:
            v = 0
        shift = v.bit_length() - SUB_BITS
        if shift <= 0:
            i = v
        else:
            i = (shift << 6) + (v >> shift)
            if i >= N_BUCKETS:
                i = _LAST
        with self._lock:
            self._counts[i] += 1
            self.count += 1
            self.total_ns += v
            if self.max_ns is None or v > self.max_ns:
                self.max_ns = v
            if self.min_ns is None or v < self.min_ns:
                self.min_ns = v

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0..100) in ms, nearest rank; None when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile {p} outside 0..100")
        with self._lock:
            return self._percentile_locked(p)

    def _percentile_locked(self, p: float) -> float | None:
        if self.count == 0 or self.min_ns is None or self.max_ns is None:
            return None
        if p >= 100.0:
            return self.max_ns / NS_PER_MS
        rank = max(1, math.ceil(p / 100.0 * self.count - 1e-9))
        seen = 0
        for i, c in enumerate(self._counts):
            if c:
                seen += c
                if seen >= rank:
                    lo, hi = bucket_bounds(i)
                    mid = lo if hi - lo == 1 else (lo + hi - 1) / 2.0
                    mid = min(max(mid, self.min_ns), self.max_ns)
                    return mid / NS_PER_MS
        return self.max_ns / NS_PER_MS  # pragma: no cover - counts and count disagree

    def summary(self) -> dict[str, float | int | None]:
        """{"p50_ms","p90_ms","p99_ms","max_ms","mean_ms","count"}; max and mean exact; None when empty."""
        with self._lock:
            n = self.count
            return {
                "p50_ms": self._percentile_locked(50.0),
                "p90_ms": self._percentile_locked(90.0),
                "p99_ms": self._percentile_locked(99.0),
                "max_ms": None if self.max_ns is None else self.max_ns / NS_PER_MS,
                "mean_ms": (self.total_ns / n / NS_PER_MS) if n else None,
                "count": n,
            }

    @property
    def min_ms(self) -> float | None:
        return None if self.min_ns is None else self.min_ns / NS_PER_MS

    def merge(self, other: Histogram) -> None:
        """Add another histogram's samples into this one."""
        with other._lock:
            counts = list(other._counts)
            n, total, lo, hi = other.count, other.total_ns, other.min_ns, other.max_ns
        if n == 0:
            return
        with self._lock:
            mine = self._counts
            for i, c in enumerate(counts):
                if c:
                    mine[i] += c
            self.count += n
            self.total_ns += total
            self.min_ns = lo if self.min_ns is None else min(self.min_ns, lo)  # type: ignore[type-var]
            self.max_ns = hi if self.max_ns is None else max(self.max_ns, hi)  # type: ignore[type-var]

    def reset(self) -> None:
        with self._lock:
            self._counts = [0] * N_BUCKETS
            self.count = 0
            self.total_ns = 0
            self.min_ns = None
            self.max_ns = None


class StageHistograms:
    """One histogram per pipeline stage, in the order stages were first seen."""

    def __init__(self, stages: Sequence[str]) -> None:
        self._stages: dict[str, Histogram] = {s: Histogram() for s in stages}
        self._lock = threading.Lock()

    def record(self, stage: str, ns: int) -> None:
        """Record one duration of `stage` (unknown stages are added on first use)."""
        h = self._stages.get(stage)
        if h is None:
            with self._lock:
                h = self._stages.setdefault(stage, Histogram())
        h.record_ns(ns)

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """{stage: Histogram.summary()}."""
        return {s: h.summary() for s, h in list(self._stages.items())}

    def reset(self) -> None:
        """Clear every stage's samples."""
        for h in list(self._stages.values()):
            h.reset()
