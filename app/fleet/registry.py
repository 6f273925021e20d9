"""The fleet registry: one mutable DeviceState per device, updated in place by the monitor's ingest path.

It takes payloads already parsed by the contract (app/telemetry/contract.py), so every field it reads
has the one shape the device sends: throttling alerts come from the device's decoded get_throttled flags.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.fleet.window import RateWindow
from app.telemetry.contract import Bench, Event, Metrics, Presence, Status, Throttling

INFER_STAGES = ("infer", "inference", "runtime", "invoke")  # latency_ms stage names taken as inference
ONLINE_STATES = ("online", "degraded")
SPOOL_GROWTH_SAMPLES = 3  # spool depth rising over this many consecutive metrics -> "spool growing"


def infer_percentiles(m: Metrics) -> tuple[float | None, float | None, float | None]:
    """(p50, p90, p99) of the inference stage of a metrics payload."""
    for stage in INFER_STAGES:
        p = m.latency_ms.get(stage)
        if p is not None and p.p90 is not None:
            return p.p50, p.p90, p.p99
    return None, None, None


def throttle_alerts(t: Throttling | None) -> list[str]:
    """What a device's decoded get_throttled flags mean for an operator: the condition now, else
    `<condition>-since-boot` when it happened since boot (the firmware's sticky bits)."""
    if t is None:
        return []
    out = []
    for now, since, name in (
        (t.now.slowed, t.since_boot.slowed, "throttled"),
        (t.now.under_voltage, t.since_boot.under_voltage, "under-voltage"),
    ):
        if now:
            out.append(name)
        elif since:
            out.append(f"{name}-since-boot")
    return out


@dataclass(slots=True)
class SeqTrack:
    """A device's gap-free seq as this consumer sees it: the highest seen, numbers missing below it, and
    repeats (a redelivery, or a device whose persisted seq was reset)."""

    last: int | None = None
    gaps: int = 0
    dups: int = 0

    def see(self, seq: int, count_gaps: bool) -> bool:
        """Count one message's seq; True when it is newer than every seq before it."""
        if self.last is None or seq > self.last:
            if count_gaps and self.last is not None:
                self.gaps += seq - self.last - 1
            self.last = seq
            return True
        if count_gaps:
            self.dups += 1
        return False


@dataclass(slots=True)
class DeviceState:
    """Everything the monitor knows about one device (latest values; history lives in the store)."""

    device_id: str
    state: str = "unknown"
    version: str | None = None
    started_at: Any = None
    runtime: str | None = None
    fallback: Any = None
    model: str | None = None
    fps: float | None = None
    infer_p50_ms: float | None = None
    infer_p90_ms: float | None = None
    infer_p99_ms: float | None = None
    power_w: float | None = None
    power_source: str | None = None
    energy_mj_per_inference: float | None = None
    temp_c: float | None = None
    cpu_percent: float | None = None
    rss_mb: float | None = None
    dropped_frames: int | None = None
    board: str | None = None
    throttling: Throttling | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    spool_depth: int | None = None
    spool_rises: int = 0
    last_seen: float = 0.0
    last_metrics_ts: float | None = None
    seq: SeqTrack = field(default_factory=SeqTrack)  # of detections
    n_status: int = 0
    n_metrics: int = 0
    n_detections: int = 0
    n_bench: int = 0
    malformed: int = 0
    unsupported_version: int = 0
    bench: Bench | None = None
    presence: dict | None = None  # label -> {count, max_score, started_at}; None: never published
    last_event: dict | None = None
    events_seq: SeqTrack = field(default_factory=SeqTrack)
    n_events: int = 0
    n_presence: int = 0
    n_snapshots: int = 0
    snapshot: bytes | None = None  # the latest JPEG, as received
    snapshot_at: float | None = None  # when it was received (monitor clock)
    dirty: bool = False
    det_window: RateWindow = field(default_factory=RateWindow)
    msg_window: RateWindow = field(default_factory=RateWindow)

    @property
    def online(self) -> bool:
        return self.state in ONLINE_STATES


class Registry:
    """Devices by id. The ingest thread calls apply_*; readers call snapshot() (both under one lock)."""

    def __init__(self, p90_alert_ms: float = 100.0, stale_s: float = 60.0) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.lock = threading.Lock()
        self.p90_alert_ms = p90_alert_ms
        self.stale_s = stale_s
        # With an MQTT 5 shared subscription each monitor sees only some of a device's messages, so
        # seq gaps say nothing there: the monitor turns this off and reports seq_gaps as null.
        self.track_seq = True

    def _get(self, device_id: str) -> DeviceState:
        d = self.devices.get(device_id)
        if d is None:
            d = self.devices[device_id] = DeviceState(device_id)
        return d

    def apply_status(self, device_id: str, p: Status, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.state = p.state
            for key in ("version", "started_at", "runtime", "model", "board"):
                if key in p.model_fields_set:
                    setattr(d, key, getattr(p, key))
            if "fallback" in p.model_fields_set:
                d.fallback = p.fallback.model_dump(by_alias=True) if p.fallback else None
            d.n_status += 1
            d.last_seen = now
            d.dirty = True

    def apply_metrics(self, device_id: str, m: Metrics, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.fps = m.fps
            d.infer_p50_ms, d.infer_p90_ms, d.infer_p99_ms = infer_percentiles(m)
            d.power_w = m.power_w
            d.power_source = m.power_source
            d.energy_mj_per_inference = m.energy_mj_per_inference
            d.temp_c = m.temp_c
            d.cpu_percent = m.cpu_percent
            d.rss_mb = m.rss_mb
            d.dropped_frames = m.dropped_frames
            if d.spool_depth is not None:
                d.spool_rises = d.spool_rises + 1 if m.spool_depth > d.spool_depth else 0
            d.spool_depth = m.spool_depth
            d.runtime = m.runtime
            d.model = m.model
            d.throttling = m.throttled
            d.reasons = dict(m.reasons)
            d.last_metrics_ts = m.ts
            d.n_metrics += 1
            d.last_seen = now
            d.dirty = True

    def apply_detections(self, device_id: str, seq: int, n_objects: int, now: float) -> None:
        """Count one detections message: sliding-window rates and seq gaps (not the message itself)."""
        with self.lock:
            d = self._get(device_id)
            d.seq.see(seq, self.track_seq)
            d.det_window.add(now, n_objects)
            d.msg_window.add(now)
            d.n_detections += 1
            d.last_seen = now
            d.dirty = True

    def apply_bench(self, device_id: str, p: Bench, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.bench = p
            d.n_bench += 1
            d.last_seen = now
            d.dirty = True

    def apply_event(self, device_id: str, e: Event, now: float) -> None:
        """The latest event (start/update/end of a label's presence) and the events seq's gaps."""
        with self.lock:
            d = self._get(device_id)
            if d.events_seq.see(e.seq, self.track_seq):
                d.last_event = e.model_dump(include={"seq", "type", "label", "count", "ts", "snapshot"})
            d.n_events += 1
            d.last_seen = now
            d.dirty = True

    def apply_presence(self, device_id: str, p: Presence, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.presence = {label: lp.model_dump() for label, lp in p.present.items()}
            d.n_presence += 1
            d.last_seen = now
            d.dirty = True

    def apply_snapshot(self, device_id: str, jpeg: bytes | None, now: float) -> None:
        """The device's latest snapshot (None: the retained one was cleared)."""
        with self.lock:
            d = self._get(device_id)
            d.snapshot, d.snapshot_at = jpeg, (now if jpeg else None)
            d.n_snapshots += 1
            d.last_seen = now

    def snapshot_jpeg(self, device_id: str) -> tuple[bytes, float] | None:
        """(JPEG, received at) of a device's latest snapshot, or None."""
        with self.lock:
            d = self.devices.get(device_id)
            if d is None or d.snapshot is None or d.snapshot_at is None:
                return None
            return d.snapshot, d.snapshot_at

    def count_malformed(self, device_id: str | None) -> None:
        if device_id is None:
            return
        with self.lock:
            self._get(device_id).malformed += 1

    def count_unsupported(self, device_id: str) -> None:
        """A payload of a contract version this monitor does not speak (the device is still listed)."""
        with self.lock:
            self._get(device_id).unsupported_version += 1

    def alerts(self, d: DeviceState, now: float) -> list[str]:
        out = []
        if not d.online:
            out.append("offline" if d.state in ("offline", "unknown") else d.state)
        elif d.last_seen and now - d.last_seen > self.stale_s:
            out.append("stale")
        if d.infer_p90_ms is not None and d.infer_p90_ms > self.p90_alert_ms:
            out.append("p90")
        out += throttle_alerts(d.throttling)
        if d.fallback:
            out.append("fallback")
        if d.spool_rises >= SPOOL_GROWTH_SAMPLES:
            out.append("spool-growing")
        return out

    def row(self, d: DeviceState, now: float) -> dict[str, Any]:
        """One device as a plain JSON-able dict."""
        bench_runtimes = [r.runtime for r in d.bench.results] if d.bench is not None else None
        t = d.throttling
        return {
            "device_id": d.device_id,
            "online": d.online,
            "state": d.state,
            "runtime": d.runtime,
            "fallback": d.fallback,
            "model": d.model,
            "fps": d.fps,
            "infer_p50_ms": d.infer_p50_ms,
            "infer_p90_ms": d.infer_p90_ms,
            "infer_p99_ms": d.infer_p99_ms,
            "power_w": d.power_w,
            "power_source": d.power_source,
            "energy_mj_per_inference": d.energy_mj_per_inference,
            "temp_c": d.temp_c,
            "cpu_percent": d.cpu_percent,
            "rss_mb": d.rss_mb,
            "board": d.board,
            "throttled": None if t is None else t.now.slowed,
            "under_voltage": None if t is None else t.now.under_voltage,
            "throttled_since_boot": None if t is None else t.since_boot.slowed,
            "under_voltage_since_boot": None if t is None else t.since_boot.under_voltage,
            "throttled_raw": None if t is None else t.raw,
            "reasons": dict(d.reasons),
            "spool_depth": d.spool_depth,
            "spool_growing": d.spool_rises >= SPOOL_GROWTH_SAMPLES,
            "dropped_frames": d.dropped_frames,
            "detections_per_min": d.det_window.total(now),
            "detection_msgs_per_min": d.msg_window.total(now),
            "seq_last": d.seq.last,
            "seq_gaps": d.seq.gaps if self.track_seq else None,
            "seq_dups": d.seq.dups if self.track_seq else None,
            "messages": {
                "status": d.n_status,
                "metrics": d.n_metrics,
                "detections": d.n_detections,
                "bench": d.n_bench,
                "events": d.n_events,
                "presence": d.n_presence,
                "snapshot": d.n_snapshots,
            },
            "malformed": d.malformed,
            "unsupported_version": d.unsupported_version,
            "version": d.version,
            "started_at": d.started_at,
            "last_seen": round(d.last_seen, 3) if d.last_seen else None,
            "age_s": round(now - d.last_seen, 1) if d.last_seen else None,
            "bench_runtimes": bench_runtimes,
            "presence": d.presence,
            "last_event": (
                None
                if d.last_event is None
                else d.last_event | {"age_s": round(max(0.0, now - d.last_event["ts"]), 1)}
            ),
            "events_seq_gaps": d.events_seq.gaps if self.track_seq else None,
            "snapshot_at": d.snapshot_at,
            "alerts": self.alerts(d, now),
        }

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            return [self.row(d, now) for d in sorted(self.devices.values(), key=lambda d: d.device_id)]

    def take_dirty(self, now: float) -> list[dict[str, Any]]:
        """Rows of devices changed since the last call (for bounded-rate history), clearing the flag."""
        with self.lock:
            out = []
            for d in self.devices.values():
                if d.dirty:
                    d.dirty = False
                    out.append(self.row(d, now))
            return out

    def device(self, device_id: str, now: float | None = None) -> dict[str, Any] | None:
        """One device's row, or None when the registry has never heard of it."""
        now = time.time() if now is None else now
        with self.lock:
            d = self.devices.get(device_id)
            return None if d is None else self.row(d, now)

    def benches(self) -> dict[str, dict]:
        """The latest bench document of each device that published one (as on the wire)."""
        with self.lock:
            return {k: d.bench.to_wire() for k, d in sorted(self.devices.items()) if d.bench is not None}
