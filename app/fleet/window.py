"""Small fixed-cost counters for the ingest path: a per-second sliding window and a lag histogram."""

from __future__ import annotations


class RateWindow:
    """Counts events in the last `span_s` seconds with one-second buckets (O(1) per add)."""

    __slots__ = ("_buckets", "_last_sec", "_span")

    def __init__(self, span_s: int = 60) -> None:
        self._span = span_s
        self._buckets = [0] * span_s
        self._last_sec = 0

    def _advance(self, sec: int) -> None:
        last = self._last_sec
        if sec <= last:
            return
        if sec - last >= self._span:
            self._buckets = [0] * self._span
        else:
            for s in range(last + 1, sec + 1):
                self._buckets[s % self._span] = 0
        self._last_sec = sec

    def add(self, now: float, n: int = 1) -> None:
        sec = int(now)
        if sec > self._last_sec:
            self._advance(sec)
        elif sec <= self._last_sec - self._span:
            return  # older than the window
        self._buckets[sec % self._span] += n

    def total(self, now: float) -> int:
        """Events within the window ending at `now` (the current, partial second included)."""
        self._advance(int(now))
        return sum(self._buckets)


class LagHistogram:
    """Ingest lag histogram: 1 ms buckets to 2 s, then 100 ms buckets to 120 s (overflow in the last)."""

    __slots__ = ("count", "counts", "max_ms")

    _FINE = 2000
    _COARSE = 1180

    def __init__(self) -> None:
        self.counts = [0] * (self._FINE + self._COARSE + 1)
        self.count = 0
        self.max_ms = 0.0

    def add(self, lag_ms: float) -> None:
        if lag_ms < 0:
            lag_ms = 0.0  # clocks a little apart: count as no lag
        if lag_ms < self._FINE:
            i = int(lag_ms)
        else:
            i = min(self._FINE + int((lag_ms - self._FINE) / 100), len(self.counts) - 1)
        self.counts[i] += 1
        self.count += 1
        if lag_ms > self.max_ms:
            self.max_ms = lag_ms

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile, in ms; None without samples."""
        if not self.count:
            return None
        rank = q / 100.0 * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if c and seen >= rank:
                return float(i + 1) if i < self._FINE else float(self._FINE + (i - self._FINE + 1) * 100)
        return self.max_ms

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": round(self.max_ms, 1) if self.count else None,
        }
