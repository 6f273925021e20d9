"""The device's state, said two ways from one set of fields: the retained MQTT status and systemd's
STATUS= line. The source reports its state here; the running engine comes from the pipeline."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app import sdnotify
from app.telemetry.contract import status_fields

if TYPE_CHECKING:
    from app.pipeline import Pipeline
    from app.telemetry.mqtt import Telemetry

log = logging.getLogger(__name__)


@dataclass
class SourceState:
    state: str = "online"
    reason: str = ""
    degraded_events: int = 0
    since: float = field(default_factory=time.time)


class DeviceStatus:
    """Source state + the pipeline's engine -> status fields, published on change."""

    def __init__(self, started_at: float, board: str | None = None) -> None:
        self.started_at = started_at
        self.board = board
        self.source = SourceState()
        self.pipeline: Pipeline | None = None
        self.telemetry: Telemetry | None = None
        self.stall: str | None = None  # why the pipeline is not live (app/pipeline.py `stalled`)

    @property
    def state(self) -> str:
        return "degraded" if self.source.state == "degraded" or self.stall else "online"

    def on_stall(self, reason: str | None) -> None:
        """The main loop's liveness check: a stall begins (reason) or ends (None); publish the change."""
        if reason == self.stall or (reason and self.stall):
            return  # unchanged (the seconds in a running stall's reason do not count as a change)
        if reason:
            log.error("pipeline stalled: %s; not feeding the systemd watchdog", reason)
        else:
            log.warning("pipeline live again")
        self.stall = reason
        self.publish()

    def on_source_state(self, state: str, reason: str) -> None:
        """The source's callback (capture thread): record a change and publish it."""
        if state == self.source.state:
            return
        log.warning("source %s%s", state, f": {reason}" if reason else "")
        events = self.source.degraded_events + (state == "degraded")
        self.source = SourceState(state, reason, events, time.time())
        self.publish()

    def fields(self) -> dict[str, Any]:
        engine = self.pipeline.engine if self.pipeline else None
        return status_fields(
            state=self.state,
            runtime=engine.runtime if engine else None,
            model=engine.model if engine else None,
            fallback=engine.fallback if engine else None,
            started_at=self.started_at,
            board=self.board,
            reason=f"stalled: {self.stall}" if self.stall else self.source.reason,
        )

    def publish(self) -> None:
        """Status changed: the retained MQTT status and systemd's STATUS= line."""
        if self.telemetry is not None:
            self.telemetry.publish_status(**self.fields())
        self.notify()

    def notify(self) -> None:
        """`systemctl status` line: state, model, runtime, fallback, fps."""
        if self.pipeline is None:
            return
        engine = self.pipeline.engine
        fb = f", fallback from {engine.fallback['from']}" if engine.fallback else ""
        stall = f", stalled: {self.stall}" if self.stall else ""
        sdnotify.status(
            f"{self.state}: {engine.model} on {engine.runtime}{fb}, {self.pipeline.fps:.1f} fps{stall}"
        )
