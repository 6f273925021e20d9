"""Background power sampling into a ring buffer, and energy over time windows.

Samples are (perf_counter_ns, watts, joules): watts from ``read_power_w``, joules from the meter's
cumulative counter when it has one (``has_energy``, then power is not read). Energy over a window is the
difference of the cumulative energy curve at its ends: the counter itself, or the trapezoid integral of
the power samples; inside one sample interval the curve is interpolated linearly.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from app.measure.power.base import PowerMeter


class PowerSampler:
    """Samples ``meter`` at ``rate_hz`` (default: the meter's) on a daemon thread; keeps ``capacity_s``."""

    def __init__(self, meter: PowerMeter, rate_hz: float | None = None, capacity_s: float = 600.0) -> None:
        self.meter = meter
        self.rate_hz = float(rate_hz or meter.rate_hz)
        if self.rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        self.capacity = max(16, int(self.rate_hz * capacity_s) + 1)
        self._t = np.zeros(self.capacity, dtype=np.int64)
        self._p = np.full(self.capacity, np.nan)
        self._e = np.full(self.capacity, np.nan)
        self._n = 0
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ns: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.meter.source

    @property
    def available(self) -> bool:
        return self.meter.available

    def start(self) -> PowerSampler:
        """Start the thread (no-op for an unavailable meter or when already running)."""
        if self.available and self._thread is None:
            self._stop.clear()
            self._started_ns = time.perf_counter_ns()
            self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        period_ns = int(1e9 / self.rate_hz)
        counter = self.meter.has_energy
        next_ns = time.perf_counter_ns()
        while not self._stop.is_set():
            t0 = time.perf_counter_ns()
            if counter:
                e, p = self.meter.read_energy_j(), None
            else:
                p, e = self.meter.read_power_w(), None
            t1 = time.perf_counter_ns()
            self.add_sample((t0 + t1) // 2, p, e)
            next_ns += period_ns
            now = time.perf_counter_ns()
            if next_ns <= now:
                next_ns = now  # behind (slow meter): sample as fast as it answers
            else:
                self._stop.wait((next_ns - now) / 1e9)

    def add_sample(self, t_ns: int, power_w: float | None, energy_j: float | None) -> None:
        """Store one sample (used by the thread; tests may feed samples directly)."""
        if power_w is None and energy_j is None:
            return
        with self._new:
            i = self._n % self.capacity
            self._t[i] = t_ns
            self._p[i] = np.nan if power_w is None else power_w
            self._e[i] = np.nan if energy_j is None else energy_j
            self._n += 1
            self._new.notify_all()

    # -- queries -------------------------------------------------------------------------------
    @property
    def sample_count(self) -> int:
        return self._n

    def achieved_hz(self) -> float | None:
        t, _, _ = self.samples()
        if len(t) < 2:
            return None
        return (len(t) - 1) / ((t[-1] - t[0]) / 1e9)

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t_ns, power_w, energy_j) of the buffered samples, oldest first (copies)."""
        with self._lock:
            n, cap = self._n, self.capacity
            if n <= cap:
                return self._t[:n].copy(), self._p[:n].copy(), self._e[:n].copy()
            i = n % cap
            order = np.r_[i:cap, 0:i]
            return self._t[order], self._p[order], self._e[order]

    def wait_for_sample_after(self, t_ns: int, timeout_s: float = 2.0) -> bool:
        """Block until a sample newer than t_ns exists (so windows ending at t_ns can be resolved)."""
        if not self.available:
            return False
        deadline = time.monotonic() + timeout_s
        with self._new:
            while self._n == 0 or self._t[(self._n - 1) % self.capacity] <= t_ns:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._new.wait(left)
        return True

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_ns, cumulative joules) curve from the buffered samples."""
        t, p, e = self.samples()
        if self.meter.has_energy:
            ok = ~np.isnan(e)
            return t[ok], e[ok]
        ok = ~np.isnan(p)
        t, p = t[ok], p[ok]
        if len(t) == 0:
            return t, p
        dt = np.diff(t) / 1e9
        c = np.concatenate(([0.0], np.cumsum((p[1:] + p[:-1]) * 0.5 * dt)))
        return t, c

    def energies_j(self, t0_ns: np.ndarray, t1_ns: np.ndarray) -> np.ndarray:
        """Energy in J of each window [t0, t1]; NaN where the samples do not cover it."""
        t0 = np.asarray(t0_ns, dtype=np.int64)
        t1 = np.asarray(t1_ns, dtype=np.int64)
        t, c = self.cumulative()
        out = np.full(t0.shape, np.nan)
        if len(t) < 2:
            return out
        covered = (t0 >= t[0]) & (t1 <= t[-1]) & (t1 >= t0)
        tf = t.astype(np.float64)
        out[covered] = np.interp(t1[covered].astype(np.float64), tf, c) - np.interp(
            t0[covered].astype(np.float64), tf, c
        )
        return out

    def energy_j(self, t0_ns: int, t1_ns: int) -> float | None:
        """Energy in J over [t0, t1]; None without a meter or when the samples do not cover it."""
        if not self.available:
            return None
        e = float(self.energies_j(np.array([t0_ns]), np.array([t1_ns]))[0])
        return None if np.isnan(e) else e

    def mean_w(self, t0_ns: int, t1_ns: int) -> float | None:
        """Mean power in W over [t0, t1]; None when unknown."""
        if t1_ns <= t0_ns:
            return None
        e = self.energy_j(t0_ns, t1_ns)
        return None if e is None else e / ((t1_ns - t0_ns) / 1e9)

    def measure_idle(self, seconds: float) -> float | None:
        """Idle baseline: mean power over the next `seconds` while the caller does nothing."""
        if not self.available:
            return None
        started_here = self._thread is None
        self.start()
        t0 = time.perf_counter_ns()
        if started_here:
            self.wait_for_sample_after(0)
            t0 = max(t0, int(self.samples()[0][0]))
        time.sleep(seconds)
        t1 = time.perf_counter_ns()
        self.wait_for_sample_after(t1)
        w = self.mean_w(t0, t1)
        if started_here:
            self.stop()
        return w
