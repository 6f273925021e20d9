"""The composition root of `lookout run`: builds every piece from the config, wires them, runs, reports.

Nothing below reaches for another piece through globals: runtimes know nothing of MQTT, telemetry knows
nothing of runtimes beyond plain data. Commands live in app/controller.py, the status line in
app/status.py, payload shapes in app/telemetry/contract.py, the run report in app/run_report.py.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import sdnotify
from app.config import LookoutConfig
from app.controller import Controller
from app.engine import engine_for
from app.frame_sink import FrameSink
from app.hostroots import HostRoots
from app.measure.health import board_model
from app.pipeline import STAGES, Pipeline
from app.run_report import build_report, write_report
from app.state_lock import StateDirLock
from app.status import DeviceStatus
from app.telemetry import contract
from app.telemetry.spool import ensure_state_dir

if TYPE_CHECKING:
    from app.measure.device import DeviceMeasurements
    from app.telemetry.mqtt import Telemetry

log = logging.getLogger(__name__)

STALL_S = 15.0  # without a systemd watchdog: a call lasting this long is reported as a stall


@dataclass
class ServiceOptions:
    """Run-time options that are not part of the config file."""

    report_path: Path | None = None
    output: str | None = None  # JSON Lines of every processed frame ("-" = stdout)
    mqtt: bool = True
    install_signal_handlers: bool = True


class Service:
    """One device: source -> pipeline -> telemetry, with measurement and remote control."""

    def __init__(self, cfg: LookoutConfig, options: ServiceOptions | None = None) -> None:
        self.cfg = cfg
        self.options = options or ServiceOptions()
        self.roots = HostRoots.from_env()
        self.status = DeviceStatus(time.time(), board_model(self.roots.base))
        self.telemetry: Telemetry | None = None
        self.pipeline: Pipeline | None = None
        self.controller: Controller | None = None
        self.sink = FrameSink()
        self._stop = threading.Event()

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        if self.pipeline is not None:
            self.pipeline.stop()

    def run(self) -> dict[str, Any]:
        """Run until the source ends, max_frames, or SIGTERM/SIGINT; return (and write) the report.
        One run per state dir: a second one stops here, before loading its model."""
        ensure_state_dir(self.cfg.state_dir)
        lock = StateDirLock(self.cfg.state_dir)
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> dict[str, Any]:
        from app.measure.device import DeviceMeasurements
        from app.vision.sources import open_source

        cfg = self.cfg
        if self.options.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

        engine = engine_for(cfg, self.roots, cfg.pipeline.score_threshold)
        if self.options.output:
            from app.results_jsonl import JsonlWriter

            self.sink.results = JsonlWriter(self.options.output)
        source = open_source(cfg.source, cfg.reconnect, on_state=self.status.on_source_state)
        measured = DeviceMeasurements(STAGES, cfg.meter, self.roots)
        watchdog = sdnotify.Watchdog()
        self.pipeline = pipeline = Pipeline(
            source,
            engine,
            self.sink,
            measured,
            live=source.live or cfg.pipeline.fps is not None,  # an fps cap paces any source like a camera
            fps_cap=cfg.pipeline.fps,
            max_frames=cfg.pipeline.max_frames,
            queue_size=cfg.pipeline.queue_size,
            on_infer=measured.on_infer,
        )
        self.status.pipeline = pipeline
        self.controller = controller = Controller(cfg, pipeline, self.status, self.roots)
        self.sink.settings = controller.settings
        # after the pipeline exists: a queued swap command may arrive as soon as we connect
        if self.options.mqtt and cfg.mqtt.enabled:
            from app.telemetry.mqtt import Telemetry

            self.telemetry = Telemetry(
                cfg.mqtt,
                cfg.spool,
                cfg.device_id,
                cfg.state_dir,
                command_handler=controller.handle,
            )
            self.status.telemetry = controller.telemetry = self.sink.telemetry = self.telemetry
            if cfg.events.enabled:
                from app.events.recorder import EventRecorder

                self.sink.events = EventRecorder(
                    cfg.events,
                    cfg.snapshot,
                    self.telemetry,
                    cfg.state_dir,
                    model_labels=lambda: pipeline.engine.decoder.labels,
                ).start()
            self.telemetry.start()

        self.status.publish()
        sdnotify.ready(f"{engine.model} on {engine.runtime} warmed up")
        t_start = time.perf_counter()
        pipeline.start()
        try:
            self._main_loop(measured, watchdog)
        finally:
            sdnotify.stopping("draining")
            pipeline.stop()
            pipeline.join(timeout=30)
            source.close()
            measured.stop()
            self.sink.close()
        report = build_report(
            device_id=cfg.device_id,
            pipeline=pipeline,
            totals=measured.totals,
            wall_s=time.perf_counter() - t_start,
            source=self.status.source,
            swaps=controller.swaps,
            energy=measured.energy.summary(),
            detections_published=self.sink.published,
            started_at=self.status.started_at,
        )
        if self.sink.events is not None:
            report["events"] = self.sink.events.stats()
        if self.telemetry is not None:
            self._publish_metrics(measured)
            self.telemetry.stop(final_state="stopped")
            report["mqtt"] = self.telemetry.stats()
        pipeline.engine.close()
        if self.options.report_path:
            write_report(self.options.report_path, report)
        return report

    def _publish_metrics(self, measured: DeviceMeasurements) -> None:
        """One metrics message. A figure that does not fit the contract is logged, never fatal: the
        service and the next interval go on."""
        try:
            telemetry = self.telemetry
            assert telemetry is not None and self.pipeline is not None
            telemetry.publish_metrics(measured.metrics(self.pipeline, telemetry.stats()))
        except contract.ContractError as exc:
            log.error("metrics not published: %s", exc)

    def _main_loop(self, measured: DeviceMeasurements, watchdog: sdnotify.Watchdog) -> None:
        """Metrics on time, and the watchdog fed while the pipeline is live (at any frame rate)."""
        pipe, settings = self.pipeline, self.controller.settings  # type: ignore[union-attr]
        assert pipe is not None
        # a call that lasts half the watchdog interval counts as hung: systemd restarts us within
        # 1.5 intervals of the hang. Without a watchdog the same check is only logged and published.
        stall_s = watchdog.interval_s / 2 if watchdog.enabled else STALL_S  # type: ignore[operator]
        tick = min(0.2, stall_s / 4)
        last_metrics = time.monotonic()
        while pipe.running and not self._stop.wait(tick):
            stall = pipe.stalled(stall_s)
            if stall is None:
                watchdog.beat()
            self.status.on_stall(stall)
            if self.sink.events is not None:
                self.sink.events.expire()  # presence ends on time even when frames stop coming
            # the interval is read each time: a `config` command changes it from the next tick on
            if time.monotonic() - last_metrics >= settings.metrics_interval_s:
                last_metrics = time.monotonic()
                if self.telemetry is not None:
                    self._publish_metrics(measured)
                self.status.notify()
                measured.window.reset()
