"""Prometheus exposition of the fleet (prometheus-client): one series per device, plus ingest counters.

A custom collector reads the registry at scrape time, so a series exists exactly while the registry
knows the device and carries that moment's labels (a swapped runtime is a new series, as Prometheus
expects). Values are in base units (seconds, watts, joules, °C). Power and energy appear only where
a device measured them, labelled with `power_source`; null is absent, never 0. An offline device keeps
only what is true now (online 0, info, simulated, last-seen age, alerts, and its counters): its last
readings are not exported, so a dashboard never shows them as current. `lookout_device_simulated` is 1
for a simulated device (scripts/fleet_load.py: synthetic numbers), 0 for a real one: a gauge of its own,
so every other series keeps its labels (filter with `... unless on(device_id) lookout_device_simulated == 1`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from app.fleet.table import is_simulated
from app.inert import printable

LABELS = ("device_id", "model", "runtime")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(row: dict[str, Any]) -> list[str]:
    """Label values from the device, with control characters as visible escapes (prometheus_client
    escapes backslash, quote and newline itself)."""
    return [printable(row.get(k) or "") for k in LABELS]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class FleetCollector:
    """prometheus_client collector over `snapshot()` (registry rows) and `stats()` (MonitorStats.as_dict)."""

    def __init__(
        self, snapshot: Callable[[], list[dict[str, Any]]], stats: Callable[[], dict[str, Any]]
    ) -> None:
        self._snapshot = snapshot
        self._stats = stats

    def describe(self) -> list:
        return []  # collected at scrape time only (no registration-time collect)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        rows = self._snapshot()

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=[*LABELS, *extra])

        online = gauge("lookout_device_online", "1 when the device's retained status is online or degraded")
        simulated = gauge(
            "lookout_device_simulated",
            "1 when the device is simulated (fleet_load): its numbers are synthetic",
        )
        fps = gauge("lookout_device_fps", "Frames per second in the device's last metrics message")
        p50, p90, p99 = (
            gauge(f"lookout_device_inference_{q}_seconds", f"Inference stage {q} latency (last metrics)")
            for q in ("p50", "p90", "p99")
        )
        power = gauge("lookout_device_power_watts", "Measured power (only where measured)", ("power_source",))
        energy = gauge(
            "lookout_device_energy_per_inference_joules",
            "Measured energy per inference (only where measured)",
            ("power_source",),
        )
        temp = gauge("lookout_device_temperature_celsius", "SoC temperature")
        throttled = gauge("lookout_device_throttled", "1 when the device reports throttling now")
        under = gauge("lookout_device_under_voltage", "1 when the device reports under-voltage now")
        spool = gauge(
            "lookout_device_spool_depth", "Messages waiting in the device's store-and-forward spool"
        )
        rss = gauge("lookout_device_rss_bytes", "Resident memory of the device's service")
        det = gauge("lookout_device_detections_per_minute", "Detected objects over the last 60 s")
        age = gauge("lookout_device_last_seen_age_seconds", "Seconds since the monitor heard from the device")
        alerts = gauge("lookout_device_alerts", "Number of active alerts (see the web page for which)")
        gaps = CounterMetricFamily(
            "lookout_device_seq_gaps", "Missing detections seq numbers (dropped messages)", labels=LABELS
        )
        info = InfoMetricFamily(
            "lookout_device", "Device facts", labels=[*LABELS, "state", "version", "power_source"]
        )
        for r in rows:
            lab = _labels(r)
            online.add_metric(lab, 1.0 if r.get("online") else 0.0)
            info.add_metric(
                [
                    *lab,
                    printable(r.get("state") or ""),
                    printable(r.get("version") or ""),
                    printable(r.get("power_source") or ""),
                ],
                {},
            )
            simulated.add_metric(lab, 1.0 if is_simulated(r) else 0.0)
            if (v := _num(r.get("age_s"))) is not None:
                age.add_metric(lab, v)
            alerts.add_metric(lab, float(len(r.get("alerts") or [])))
            if (v := _num(r.get("seq_gaps"))) is not None:
                gaps.add_metric(lab, v)
            if not r.get("online"):
                continue  # its last readings are history, not the present
            for fam, key, scale in (
                (fps, "fps", 1.0),
                (p50, "infer_p50_ms", 1e-3),
                (p90, "infer_p90_ms", 1e-3),
                (p99, "infer_p99_ms", 1e-3),
                (temp, "temp_c", 1.0),
                (spool, "spool_depth", 1.0),
                (rss, "rss_mb", 1e6),
                (det, "detections_per_min", 1.0),
            ):
                v = _num(r.get(key))
                if v is not None:
                    fam.add_metric(lab, v * scale)
            src = printable(r.get("power_source") or "")
            if (v := _num(r.get("power_w"))) is not None:
                power.add_metric([*lab, src], v)
            if (v := _num(r.get("energy_mj_per_inference"))) is not None:
                energy.add_metric([*lab, src], v * 1e-3)
            for fam, key in ((throttled, "throttled"), (under, "under_voltage")):
                if r.get(key) is not None:
                    fam.add_metric(lab, 1.0 if r[key] else 0.0)
        yield from (
            online,
            simulated,
            info,
            fps,
            p50,
            p90,
            p99,
            power,
            energy,
            temp,
            throttled,
            under,
            spool,
            rss,
            det,
        )
        yield from (age, alerts, gaps)
        yield from self._ingest(rows)

    def _ingest(self, rows: list[dict[str, Any]]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._stats()
        rx = CounterMetricFamily(
            "lookout_fleet_messages_received", "Messages ingested, by kind", labels=["kind"]
        )
        for kind, n in sorted(s.get("received", {}).items()):
            rx.add_metric([kind], n)
        bad = CounterMetricFamily(
            "lookout_fleet_messages_malformed", "Messages refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(s.get("malformed", {}).items()):
            bad.add_metric([reason], n)
        yield rx
        yield bad
        unsupported = CounterMetricFamily(
            "lookout_fleet_messages_unsupported_version",
            "Messages of a payload contract version this monitor does not speak (none: no v)",
            labels=["version"],
        )
        for version, n in sorted(s.get("unsupported_version", {}).items()):
            unsupported.add_metric([version], n)
        yield unsupported
        yield CounterMetricFamily(
            "lookout_fleet_history_rows", "History rows written", value=s.get("history_rows", 0)
        )
        yield CounterMetricFamily(
            "lookout_fleet_history_errors", "History writes that failed", value=s.get("history_errors", 0)
        )
        yield GaugeMetricFamily(
            "lookout_fleet_connected",
            "1 while connected to the broker",
            value=1.0 if s.get("connected") else 0.0,
        )
        yield GaugeMetricFamily("lookout_fleet_devices", "Devices known to the monitor", value=len(rows))
        yield GaugeMetricFamily(
            "lookout_fleet_devices_online", "Devices online", value=sum(1 for r in rows if r.get("online"))
        )
        lag = GaugeMetricFamily(
            "lookout_fleet_ingest_lag_seconds",
            "Receive time minus payload ts since start, by quantile",
            labels=["quantile"],
        )
        for q, key in (("0.5", "p50_ms"), ("0.99", "p99_ms")):
            v = _num(s.get("lag_ms", {}).get(key))
            if v is not None:
                lag.add_metric([q], v / 1000.0)
        yield lag
        yield CounterMetricFamily(
            "lookout_fleet_cpu_seconds", "CPU time of the monitor process", value=s.get("cpu_s", 0.0)
        )


def exposition(collector: FleetCollector) -> bytes:
    """The text exposition format of one scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return generate_latest(reg)
