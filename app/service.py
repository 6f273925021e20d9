"""The composition root of `lookout run`: builds every piece from the config, wires them, runs, reports.

Nothing below reaches for another piece through globals: runtimes know nothing of MQTT, telemetry knows
nothing of runtimes beyond plain data. Hot swap builds and warms a new engine beside the running one
(on the command worker thread) and switches between two frames; a failure leaves the old one running.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import __version__, sdnotify
from app.engine import Engine, build_engine
from app.errors import LookoutError
from app.pipeline import STAGES, FrameResult, Pipeline

log = logging.getLogger(__name__)

LIVE_SOURCES = ("picamera2",)
IDLE_BASELINE_S = 2.0


@dataclass
class ServiceOptions:
    """Run-time options that are not part of the config file."""

    report_path: Path | None = None
    mqtt: bool = True
    install_signal_handlers: bool = True


@dataclass
class SourceState:
    state: str = "online"
    reason: str = ""
    degraded_events: int = 0
    since: float = field(default_factory=time.time)


class Service:
    """One device: source -> pipeline -> telemetry, with measurement and remote control."""

    def __init__(self, cfg: Any, options: ServiceOptions | None = None) -> None:
        self.cfg = cfg
        self.options = options or ServiceOptions()
        self.started_at = time.time()
        self._stop = threading.Event()
        self._swap_lock = threading.Lock()
        self.source_state = SourceState()
        self.telemetry: Any = None
        self.pipeline: Pipeline | None = None
        self.engine: Engine | None = None
        self.swaps: list[dict[str, Any]] = []
        self.detections_published = 0
        self._metrics_interval_s = cfg.mqtt.metrics_interval_s
        self._publish_empty = cfg.mqtt.publish_empty

    # --- building ------------------------------------------------------------------------------
    def _is_live(self) -> bool:
        src = self.cfg.source
        if src.type in LIVE_SOURCES or self.cfg.pipeline.fps:
            return True
        if src.type == "opencv":
            uri = str(src.uri)
            return (
                src.realtime or uri.isdigit() or uri.startswith(("/dev/", "rtsp://", "http://", "https://"))
            )
        return False

    def _on_source_state(self, state: str, reason: str) -> None:
        if state == self.source_state.state:
            return
        log.warning("source %s%s", state, f": {reason}" if reason else "")
        self.source_state = SourceState(
            state, reason, self.source_state.degraded_events + (state == "degraded"), time.time()
        )
        self._publish_status()

    def _build_meter(self) -> Any:
        """Start the power sampler and measure the idle baseline (before inference starts) when a meter exists."""
        from app.measure.power import make_meter
        from app.measure.power.energy import EnergyAccumulator
        from app.measure.power.sampler import PowerSampler

        sampler = PowerSampler(make_meter(self.cfg.meter), getattr(self.cfg.meter, "rate_hz", None)).start()
        idle_w = sampler.measure_idle(IDLE_BASELINE_S) if sampler.available else None
        return sampler, EnergyAccumulator(sampler, idle_w=idle_w)

    # --- status and metrics ----------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self.source_state.state == "degraded":
            return "degraded"
        return "online"

    def status_fields(self) -> dict[str, Any]:
        engine = self.engine
        fields = {
            "state": self.state,
            "runtime": engine.runtime if engine else None,
            "model": engine.model if engine else None,
            "fallback": engine.fallback if engine else None,
            "started_at": self.started_at,
        }
        if self.source_state.reason:
            fields["reason"] = self.source_state.reason
        return fields

    def _publish_status(self) -> None:
        """Status changed: the retained MQTT status and systemd's STATUS= line."""
        if self.telemetry is not None:
            self.telemetry.publish_status(**self.status_fields())
        self._notify_status()

    def _notify_status(self) -> None:
        """`systemctl status` line: state, model, runtime, fallback, fps."""
        engine = self.engine
        if engine is not None:
            fb = f", fallback from {engine.fallback['from']}" if engine.fallback else ""
            fps = self.pipeline.fps if self.pipeline else 0.0
            sdnotify.status(f"{self.state}: {engine.model} on {engine.runtime}{fb}, {fps:.1f} fps")

    def metrics(self, window: Any) -> dict[str, Any]:
        pipe = self.pipeline
        engine = self.engine
        assert pipe is not None and engine is not None
        health = self.health.snapshot()
        energy = self.energy.summary()
        stats = self.telemetry.stats() if self.telemetry is not None else {}
        summary = window.summary()
        return {
            "ts": time.time(),
            "fps": round(pipe.fps, 2),
            "latency_ms": {
                s: {k: summary[s][f"{k}_ms"] for k in ("p50", "p90", "p99")} for s in STAGES if s in summary
            },
            "power_w": energy.get("power_w"),
            "power_source": energy.get("power_source"),
            "energy_mj_per_inference": energy.get("energy_mj_per_inference"),
            "temp_c": health.get("temp_c"),
            "cpu_percent": health.get("cpu_percent"),
            "rss_mb": health.get("rss_mb"),
            "dropped_frames": pipe.dropped_frames,
            "spool_depth": stats.get("spool_depth"),
            "runtime": engine.runtime,
            "model": engine.model,
            "throttled": health.get("throttled"),
        }

    # --- commands ------------------------------------------------------------------------------
    def handle_command(self, verb: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Called by telemetry's command worker (never the pipeline's threads)."""
        if verb == "swap":
            return self.swap(payload["model"], payload["runtime"])
        if verb == "config":
            return self._apply_config(payload)
        if verb == "bench":
            return self._bench(payload)
        raise LookoutError(f"unknown command {verb!r}")

    def swap(self, model: str, runtime: str) -> dict[str, Any]:
        """Load and warm `model` on `runtime` beside the running engine, then switch between two frames."""
        from app.config import validate_config

        if not self._swap_lock.acquire(blocking=False):
            return {"ok": False, "error": "another swap is in progress"}
        try:
            t0 = time.monotonic()
            data = self.cfg.model_dump(mode="json")
            data["model"] = model
            threads = data["runtime"].get("threads", 1)
            # a runtime whose libraries are not imported yet is loaded in a child process: importing torch
            # holds the GIL for up to half a second at a time and would stall the running pipeline
            data["runtime"] = {"type": runtime, "threads": threads, "isolate": needs_isolation(runtime)}
            new_cfg = validate_config(data, "swap command")
            old_interval = sys.getswitchinterval()
            sys.setswitchinterval(0.0005)  # the loader's Python bytecode must not starve the pipeline threads
            try:
                new = build_engine(
                    new_cfg.model,
                    new_cfg.runtime,
                    new_cfg.models_dir,
                    self.cfg.pipeline.score_threshold,
                    self.cfg.pipeline.warmup,
                    queue_size=self.cfg.pipeline.queue_size,
                )
            finally:
                sys.setswitchinterval(old_interval)
            assert self.pipeline is not None
            old = self.pipeline.swap_engine(new)
            self.engine = new
            self.cfg = new_cfg
            record = {
                "ok": True,
                "from": {"model": old.model, "runtime": old.runtime},
                "to": {"model": new.model, "runtime": new.runtime},
                "fallback": new.fallback,
                "load_s": round(time.monotonic() - t0, 3),
            }
            self.swaps.append(record)
            self._publish_status()
            return record
        except LookoutError as exc:
            log.warning("swap to %s/%s rejected: %s", model, runtime, exc)
            return {"ok": False, "error": str(exc)}
        finally:
            self._swap_lock.release()

    def _apply_config(self, payload: dict[str, Any]) -> dict[str, Any]:
        applied: dict[str, Any] = {}
        if "metrics_interval_s" in payload:
            self._metrics_interval_s = float(payload["metrics_interval_s"])
            applied["metrics_interval_s"] = self._metrics_interval_s
        if "publish_empty" in payload:
            self._publish_empty = bool(payload["publish_empty"])
            applied["publish_empty"] = self._publish_empty
        if "score_threshold" in payload and self.engine is not None:
            self.engine.score_threshold = float(payload["score_threshold"])
            applied["score_threshold"] = self.engine.score_threshold
        return {"ok": True, "applied": applied}

    def _bench(self, payload: dict[str, Any]) -> dict[str, Any]:
        from app.measure.bench import BenchOptions, run_bench

        engine = self.engine
        assert engine is not None
        opts = BenchOptions(
            model=engine.model,
            runtimes=list(payload.get("runtimes") or [engine.runtime]),
            frames=int(payload.get("frames", 100)),
        )
        result, _ = run_bench(opts)
        if self.telemetry is not None:
            self.telemetry.publish_bench(result)
        return {"ok": True, "results": len(result.get("results", []))}

    # --- the sink: one call per processed frame, on the pipeline's post thread ---------------------
    def _sink(self, result: FrameResult) -> None:
        if self.telemetry is None or (not result.detections and not self._publish_empty):
            return
        self.detections_published += 1
        self.telemetry.publish_detections(
            {
                "ts": result.ts,
                "frame": result.index,
                "model": result.model,
                "runtime": result.runtime,
                "detections": [d.to_json() for d in result.detections],
                "latency_ms": result.latency_ms,
            }
        )

    # --- running -------------------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop.set()
        if self.pipeline is not None:
            self.pipeline.stop()

    def run(self) -> dict[str, Any]:
        """Run until the source ends, max_frames, or SIGTERM/SIGINT; return (and write) the report."""
        from app.measure.health import HealthReader
        from app.measure.latency import StageHistograms
        from app.vision.sources import open_source

        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if self.options.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

        self.engine = build_engine(
            cfg.model,
            cfg.runtime,
            cfg.models_dir,
            cfg.pipeline.score_threshold,
            cfg.pipeline.warmup,
            queue_size=cfg.pipeline.queue_size,
        )
        source = open_source(cfg.source, cfg.reconnect, on_state=self._on_source_state)
        self.health = HealthReader()
        self.sampler, self.energy = self._build_meter()
        totals = StageHistograms((*STAGES, "end_to_end"))
        window = StageHistograms(STAGES)
        watchdog = sdnotify.Watchdog()
        self.pipeline = Pipeline(
            source,
            self.engine,
            self._sink,
            _Tee(totals, window),
            live=self._is_live(),
            fps_cap=cfg.pipeline.fps,
            max_frames=cfg.pipeline.max_frames,
            queue_size=cfg.pipeline.queue_size,
            on_infer=self.energy.add,
            on_frame=watchdog.beat,
        )
        # after the pipeline exists: a queued swap command may arrive as soon as we connect
        if self.options.mqtt and cfg.mqtt.enabled:
            from app.telemetry.mqtt import Telemetry

            self.telemetry = Telemetry(
                cfg.mqtt,
                cfg.spool,
                cfg.device_id,
                cfg.state_dir,
                command_handler=self.handle_command,
                models_dir=cfg.models_dir,
            )
            self.telemetry.start()

        self._publish_status()
        sdnotify.ready(f"{self.engine.model} on {self.engine.runtime} warmed up")
        t_start = time.perf_counter()
        self.pipeline.start()
        try:
            self._main_loop(window, watchdog)
        finally:
            sdnotify.stopping("draining")
            self.pipeline.stop()
            self.pipeline.join(timeout=30)
            source.close()
            self.sampler.stop()
        report = self._report(totals, time.perf_counter() - t_start)
        if self.telemetry is not None:
            self.telemetry.publish_metrics(self.metrics(window))
            self.telemetry.stop(final_state="stopped")
            report["mqtt"] = self.telemetry.stats()
        if self.engine is not None:
            self.engine.close()
        if self.options.report_path:
            path = Path(self.options.report_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
        return report

    def _main_loop(self, window: Any, watchdog: Any) -> None:
        pipe = self.pipeline
        assert pipe is not None
        next_metrics = time.monotonic() + self._metrics_interval_s
        while pipe.running and not self._stop.wait(0.2):
            if self.source_state.state == "degraded":
                watchdog.beat()  # the capture thread is alive and reconnecting: not hung
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + self._metrics_interval_s
                if self.telemetry is not None:
                    self.telemetry.publish_metrics(self.metrics(window))
                self._notify_status()
                window.reset()

    def _report(self, totals: Any, wall_s: float) -> dict[str, Any]:
        pipe = self.pipeline
        engine = self.engine
        assert pipe is not None and engine is not None
        summary = totals.summary()
        stages = {
            s: {
                k: _round(summary.get(s, {}).get(k))
                for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms", "count")
            }
            for s in (*STAGES, "end_to_end")
        }
        return {
            "version": __version__,
            "device_id": self.cfg.device_id,
            "model": engine.model,
            "frames": pipe.frames,
            "fps": round(pipe.fps, 2),
            "wall_s": round(wall_s, 3),
            "runtime": engine.runtime,
            "requested_runtime": engine.requested_runtime,
            "fallback": engine.fallback,
            "artifact": str(engine.opened.artifact_path),
            "warmup": engine.warmup,
            "stages": stages,
            "detections_total": pipe.detections_total,
            "dropped_frames": pipe.dropped_frames,
            "detections_published": self.detections_published,
            "errors": pipe.errors,
            "last_error": pipe.last_error,
            "source": {
                "state": self.source_state.state,
                "degraded_events": self.source_state.degraded_events,
                "reconnects": getattr(pipe.source, "reconnects", None),
                "failures": getattr(pipe.source, "failures", None),
            },
            "max_frame_gap_ms": round(pipe.max_gap_ms, 3),
            "swaps": self.swaps,
            "energy": self.energy.summary(),
            "started_at": self.started_at,
        }


def needs_isolation(runtime: str) -> bool:
    """True when none of the runtime's Python modules is imported in this process yet."""
    from app.runtimes.base import get_runtime_class

    cls = get_runtime_class(runtime)
    return bool(cls.requires) and not any(m.split(".")[0] in sys.modules for m in cls.requires)


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


class _Tee:
    """Record each stage duration into the run's totals and the current metrics window."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: Any, b: Any) -> None:
        self._a, self._b = a.record, b.record

    def record(self, stage: str, ns: int) -> None:
        self._a(stage, ns)
        if stage != "end_to_end":
            self._b(stage, ns)
