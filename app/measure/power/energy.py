"""Energy per inference: the pipeline feeds inference windows, the sampler's samples price them."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from app.measure.power.sampler import PowerSampler


class EnergyAccumulator:
    """Collects (t0_ns, t1_ns) per inference; ``summary()`` prices the windows the samples already cover.

    gross = energy measured over the inference windows; net = gross minus ``idle_w`` x window duration.
    """

    def __init__(self, sampler: PowerSampler, idle_w: float | None = None) -> None:
        self.sampler = sampler
        self.idle_w = idle_w
        self._pending: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._pending = []
            self.n = 0
            self.gross_j = 0.0
            self.window_s = 0.0
            self.dropped = 0

    def add(self, t0_ns: int, t1_ns: int) -> None:
        """One inference ran from t0 to t1 (perf_counter_ns). Cheap; no meter access."""
        if self.sampler.available:
            with self._lock:  # update() swaps the list under this lock; an unlocked append could be lost
                self._pending.append((t0_ns, t1_ns))

    def update(self) -> None:
        """Price pending windows covered by samples; drop windows older than the buffer."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        w = np.array(pending, dtype=np.int64)
        t, _ = self.sampler.cumulative()
        if len(t) < 2:
            with self._lock:
                self._pending = pending + self._pending
            return
        e = self.sampler.energies_j(w[:, 0], w[:, 1])
        ok = ~np.isnan(e)
        later = (~ok) & (w[:, 1] > t[-1])  # not sampled yet: keep for the next update
        with self._lock:
            self.n += int(ok.sum())
            self.gross_j += float(e[ok].sum())
            self.window_s += float((w[ok, 1] - w[ok, 0]).sum()) / 1e9
            self.dropped += int((~ok & ~later).sum())
            self._pending = [tuple(x) for x in w[later].tolist()] + self._pending  # type: ignore[misc]

    def summary(self) -> dict[str, Any]:
        """energy_mj_per_inference (gross), energy_mj_per_inference_net, power_w, idle_w, power_source."""
        self.update()
        src = self.sampler.source
        if not self.sampler.available or self.n == 0:
            return {
                "energy_mj_per_inference": None,
                "energy_mj_per_inference_net": None,
                "power_w": None,
                "idle_w": self.idle_w,
                "power_source": src,
                "inferences_measured": 0,
            }
        gross_mj = self.gross_j / self.n * 1000.0
        net_mj = (
            None if self.idle_w is None else (self.gross_j - self.idle_w * self.window_s) / self.n * 1000.0
        )
        return {
            "energy_mj_per_inference": gross_mj,
            "energy_mj_per_inference_net": net_mj,
            "power_w": self.gross_j / self.window_s if self.window_s > 0 else None,
            "idle_w": self.idle_w,
            "power_source": src,
            "inferences_measured": self.n,
        }
