"""The fleet registry: one mutable DeviceState per device, updated in place by the monitor's ingest path."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.fleet.window import RateWindow

INFER_STAGES = ("infer", "inference", "runtime", "invoke")  # latency_ms stage names taken as inference
ONLINE_STATES = ("online", "degraded")
SPOOL_GROWTH_SAMPLES = 3  # spool depth rising over this many consecutive metrics -> "spool growing"


def infer_percentiles(latency_ms: Any) -> tuple[float | None, float | None, float | None]:
    """(p50, p90, p99) of the inference stage from a metrics `latency_ms` {stage: {p50, p90, p99}}."""
    if not isinstance(latency_ms, dict):
        return None, None, None
    for stage in INFER_STAGES:
        s = latency_ms.get(stage)
        if isinstance(s, dict) and isinstance(s.get("p90"), int | float):
            return tuple(  # type: ignore[return-value]
                float(v) if isinstance(v := s.get(q), int | float) else None for q in ("p50", "p90", "p99")
            )
    return None, None, None


# Raspberry Pi `vcgencmd get_throttled` bits: 0 under-voltage now, 1 frequency capped, 2 throttled,
# 3 soft temperature limit; 16-19 the same "has occurred since boot".
def throttle_flags(raw: Any) -> tuple[bool | None, bool | None]:
    """(throttled_now, under_voltage_now) from a bool, a get_throttled bitmask, or a flags object."""
    if raw is None:
        return None, None
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, int):
        return bool(raw & 0b1110), bool(raw & 0b1)
    if isinstance(raw, str):
        try:
            return throttle_flags(int(raw, 0))
        except ValueError:
            return None, None
    if isinstance(raw, dict):  # named flags; "*occurred*" / "*since*" flags are history, not "now"
        now_flags = {k: v for k, v in raw.items() if v is True and "occurred" not in k and "since" not in k}
        under = [k for k in now_flags if "undervolt" in k.replace("_", "")]
        return len(now_flags) > len(under), bool(under)
    return None, None


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
    throttled_raw: Any = None
    throttled: bool | None = None
    under_voltage: bool | None = None
    spool_depth: int | None = None
    spool_rises: int = 0
    last_seen: float = 0.0
    last_metrics_ts: float | None = None
    seq_last: int | None = None
    seq_gaps: int = 0
    seq_dups: int = 0
    n_status: int = 0
    n_metrics: int = 0
    n_detections: int = 0
    n_bench: int = 0
    malformed: int = 0
    bench: dict | None = None
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

    def apply_status(self, device_id: str, p: dict, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.state = str(p.get("state", "unknown"))
            for key in ("version", "started_at", "runtime", "fallback", "model"):
                if key in p:
                    setattr(d, key, p[key])
            d.n_status += 1
            d.last_seen = now
            d.dirty = True

    def apply_metrics(self, device_id: str, p: dict, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            g = p.get
            d.fps = g("fps")
            d.infer_p50_ms, d.infer_p90_ms, d.infer_p99_ms = infer_percentiles(g("latency_ms"))
            d.power_w = g("power_w")
            d.power_source = g("power_source")
            d.energy_mj_per_inference = g("energy_mj_per_inference")
            d.temp_c = g("temp_c")
            d.cpu_percent = g("cpu_percent")
            d.rss_mb = g("rss_mb")
            d.dropped_frames = g("dropped_frames")
            depth = g("spool_depth")
            if isinstance(depth, int) and isinstance(d.spool_depth, int):
                d.spool_rises = d.spool_rises + 1 if depth > d.spool_depth else 0
            d.spool_depth = depth
            if "runtime" in p:
                d.runtime = p["runtime"]
            if "model" in p:
                d.model = p["model"]
            raw = g("throttled")
            if raw is not d.throttled_raw:
                d.throttled_raw = raw
                d.throttled, d.under_voltage = throttle_flags(raw)
            d.last_metrics_ts = g("ts")
            d.n_metrics += 1
            d.last_seen = now
            d.dirty = True

    def apply_detections(self, device_id: str, seq: int, n_objects: int, now: float) -> None:
        """Count one detections message: sliding-window rates and seq gaps (not the message itself)."""
        with self.lock:
            d = self._get(device_id)
            last = d.seq_last
            if last is None or seq > last:
                if self.track_seq and last is not None and seq > last + 1:
                    d.seq_gaps += seq - last - 1
                d.seq_last = seq
            elif self.track_seq:
                d.seq_dups += 1  # redelivery, or a device whose persisted seq was reset
            d.det_window.add(now, n_objects)
            d.msg_window.add(now)
            d.n_detections += 1
            d.last_seen = now
            d.dirty = True

    def apply_bench(self, device_id: str, p: dict, now: float) -> None:
        with self.lock:
            d = self._get(device_id)
            d.bench = p
            d.n_bench += 1
            d.last_seen = now
            d.dirty = True

    def count_malformed(self, device_id: str | None) -> None:
        if device_id is None:
            return
        with self.lock:
            self._get(device_id).malformed += 1

    def alerts(self, d: DeviceState, now: float) -> list[str]:
        out = []
        if not d.online:
            out.append("offline" if d.state in ("offline", "unknown") else d.state)
        elif d.last_seen and now - d.last_seen > self.stale_s:
            out.append("stale")
        if d.infer_p90_ms is not None and d.infer_p90_ms > self.p90_alert_ms:
            out.append("p90")
        if d.throttled:
            out.append("throttled")
        if d.under_voltage:
            out.append("under-voltage")
        if d.fallback:
            out.append("fallback")
        if d.spool_rises >= SPOOL_GROWTH_SAMPLES:
            out.append("spool-growing")
        return out

    def row(self, d: DeviceState, now: float) -> dict[str, Any]:
        """One device as a plain JSON-able dict."""
        bench_runtimes = None
        if isinstance(d.bench, dict) and isinstance(d.bench.get("results"), list):
            bench_runtimes = [r.get("runtime") for r in d.bench["results"] if isinstance(r, dict)]
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
            "throttled": d.throttled,
            "under_voltage": d.under_voltage,
            "throttled_raw": d.throttled_raw,
            "spool_depth": d.spool_depth,
            "spool_growing": d.spool_rises >= SPOOL_GROWTH_SAMPLES,
            "dropped_frames": d.dropped_frames,
            "detections_per_min": d.det_window.total(now),
            "detection_msgs_per_min": d.msg_window.total(now),
            "seq_last": d.seq_last,
            "seq_gaps": d.seq_gaps if self.track_seq else None,
            "seq_dups": d.seq_dups if self.track_seq else None,
            "messages": {
                "status": d.n_status,
                "metrics": d.n_metrics,
                "detections": d.n_detections,
                "bench": d.n_bench,
            },
            "malformed": d.malformed,
            "version": d.version,
            "started_at": d.started_at,
            "last_seen": round(d.last_seen, 3) if d.last_seen else None,
            "age_s": round(now - d.last_seen, 1) if d.last_seen else None,
            "bench_runtimes": bench_runtimes,
            "alerts": self.alerts(d, now),
        }

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        with self.lock:
            return [self.row(d, now) for d in sorted(self.devices.values(), key=lambda d: d.device_id)]

    def device(self, device_id: str, now: float | None = None) -> dict[str, Any] | None:
        """One device's row, or None when the registry has never heard of it."""
        now = time.time() if now is None else now
        with self.lock:
            d = self.devices.get(device_id)
            return None if d is None else self.row(d, now)

    def benches(self) -> dict[str, dict]:
        """The latest bench document of each device that published one."""
        with self.lock:
            return {k: d.bench for k, d in sorted(self.devices.items()) if isinstance(d.bench, dict)}

    def take_dirty(self, now: float) -> list[dict[str, Any]]:
        """Rows of devices changed since the last call (for bounded-rate history), clearing the flag."""
        with self.lock:
            out = []
            for d in self.devices.values():
                if d.dirty:
                    d.dirty = False
                    out.append(self.row(d, now))
            return out
