"""What a running device measures: per-stage latency (run totals and the current metrics window),
power sampled in the background with energy per inference, and health (CPU, memory, temperatures,
throttling). The service records into it; metrics and the run report read from it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from app.measure.health import HealthReader
from app.measure.latency import StageHistograms
from app.measure.power import EnergyAccumulator, PowerSampler, make_meter
from app.telemetry import contract

if TYPE_CHECKING:
    from app.config import MeterConfig
    from app.hostroots import HostRoots
    from app.pipeline import Pipeline

IDLE_BASELINE_S = 2.0


class DeviceMeasurements:
    """Histograms, power sampler, energy accumulator and health reader of one `lookout run`."""

    def __init__(self, stages: tuple[str, ...], meter: MeterConfig, roots: HostRoots) -> None:
        self.stages = stages
        self.totals = StageHistograms((*stages, "end_to_end"))
        self.window = StageHistograms(stages)
        self.health = HealthReader(roots.base)
        self.sampler = PowerSampler(make_meter(meter, host=roots)).start()
        # the idle baseline is measured before inference starts, when a meter exists
        idle_w = self.sampler.measure_idle(IDLE_BASELINE_S) if self.sampler.available else None
        self.energy = EnergyAccumulator(self.sampler, idle_w)

    def record(self, stage: str, ns: int) -> None:
        """One stage duration (the pipeline's histogram sink): into the totals and the current window."""
        self.totals.record(stage, ns)
        if stage != "end_to_end":
            self.window.record(stage, ns)

    def on_infer(self, t0_ns: int, t1_ns: int) -> None:
        """One inference's time window, for energy per inference."""
        self.energy.add(t0_ns, t1_ns)

    def metrics(self, pipeline: Pipeline, spool: dict[str, Any]) -> contract.Metrics:
        """The metrics message of the current window (`spool`: telemetry's stats)."""
        return contract.metrics(
            ts=time.time(),
            fps=pipeline.fps,
            latency_ms=contract.latency_percentiles(self.window.summary(), self.stages),
            energy=self.energy.summary(),
            health=self.health.snapshot(),
            dropped_frames=pipeline.dropped_frames,
            spool_depth=spool["spool_depth"],
            spool_dropped=spool["dropped"],
            spool_drop_reasons=spool["dropped_reasons"],
            runtime=pipeline.engine.runtime,
            model=pipeline.engine.model,
        )

    def stop(self) -> None:
        self.sampler.stop()
