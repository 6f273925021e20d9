"""Histogram percentiles vs numpy on the same samples, within the documented precision."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.measure.latency import Histogram, StageHistograms, bucket_bounds, bucket_index

REL = 1 / 128  # documented worst case: half a bucket, bucket width <= 1/64 of its lower bound
values_ns = st.integers(min_value=1_000, max_value=600 * 10**9)  # 1 µs .. 10 min


def _close(got_ms: float, want_ns: float) -> bool:
    return abs(got_ms * 1e6 - want_ns) <= REL * want_ns + 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(values_ns, min_size=1, max_size=400), st.floats(min_value=0.0, max_value=100.0))
def test_percentile_matches_numpy_nearest_rank(samples: list[int], p: float) -> None:
    h = Histogram()
    for v in samples:
        h.record_ns(v)
    want = float(np.percentile(np.array(samples, dtype=np.float64), p, method="inverted_cdf"))
    assert _close(h.percentile(p), want), (h.percentile(p), want)


@settings(max_examples=40, deadline=None)
@given(st.lists(values_ns, min_size=1, max_size=300))
def test_summary_max_and_mean_are_exact(samples: list[int]) -> None:
    h = Histogram()
    for v in samples:
        h.record_ns(v)
    s = h.summary()
    assert s["count"] == len(samples)
    assert s["max_ms"] == max(samples) / 1e6
    assert s["mean_ms"] == pytest.approx(sum(samples) / len(samples) / 1e6, rel=1e-12)
    for key, p in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
        want = float(np.percentile(np.array(samples, dtype=np.float64), p, method="inverted_cdf"))
        assert _close(s[key], want), (key, s[key], want)


@settings(max_examples=40, deadline=None)
@given(st.lists(values_ns, max_size=200), st.lists(values_ns, max_size=200))
def test_merge_equals_recording_everything(a: list[int], b: list[int]) -> None:
    ha, hb, hall = Histogram(), Histogram(), Histogram()
    for v in a:
        ha.record_ns(v)
        hall.record_ns(v)
    for v in b:
        hb.record_ns(v)
        hall.record_ns(v)
    ha.merge(hb)
    assert ha.summary() == hall.summary()


@given(st.integers(min_value=0, max_value=2**42 - 1))
def test_bucket_contains_value_and_is_narrow(v: int) -> None:
    lo, hi = bucket_bounds(bucket_index(v))
    assert lo <= v < hi
    assert hi - lo <= max(1, lo / 64)


def test_memory_is_bounded_and_huge_values_keep_exact_max() -> None:
    h = Histogram()
    h.record_ns(10**15)  # 11.6 days: beyond the bucket range
    h.record_ns(2_000)
    assert len(h._counts) < 4096
    assert h.summary()["max_ms"] == 10**15 / 1e6
    assert h.percentile(100) == 10**15 / 1e6


def test_empty_summary_is_null_not_zero() -> None:
    s = Histogram().summary()
    assert s["count"] == 0
    assert all(s[k] is None for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"))


def test_reset_forgets_samples() -> None:
    h = Histogram()
    h.record_ns(5_000_000)
    h.reset()
    assert h.summary()["count"] == 0
    h.record_ns(7_000_000)
    assert h.summary()["max_ms"] == 7.0


def test_stage_histograms_add_unknown_stages_and_reset() -> None:
    st_h = StageHistograms(["infer", "decode"])
    for v in (5_000_000, 6_000_000):
        st_h.record("infer", v)
    st_h.record("publish", 2_000)  # unknown stage: added on first use, after the given ones
    s = st_h.summary()
    assert list(s) == ["infer", "decode", "publish"]
    assert s["infer"]["count"] == 2 and s["infer"]["max_ms"] == 6.0
    assert s["decode"]["count"] == 0 and s["publish"]["count"] == 1
    st_h.reset()
    assert all(v["count"] == 0 for v in st_h.summary().values())


def test_record_cost_is_reported() -> None:
    """Not a timed assertion: prints ns per record() so regressions are visible in -s output."""
    h = Histogram()
    n = 20_000
    t0 = time.perf_counter_ns()
    for i in range(n):
        h.record_ns(1_000_000 + i)
    per = (time.perf_counter_ns() - t0) / n
    print(f"\nHistogram.record_ns: {per:.0f} ns per call")
    assert h.summary()["count"] == n
