"""Registry bookkeeping (seq gaps, windows, alerts), SQLite retention, the live view's rendering."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from rich.console import Console

from app.errors import ConfigError
from app.fleet.monitor import Monitor
from app.fleet.registry import Registry, throttle_alerts
from app.fleet.store import Store, parse_duration
from app.fleet.view import render, sort_rows
from app.fleet.window import LagHistogram, RateWindow
from app.telemetry.contract import Metrics, Status, Throttling


def metrics_dict(**over: object) -> dict:
    m = {
        "v": 1, "ts": time.time(), "fps": 9.5, "latency_ms": {"infer": {"p50": 5.0, "p90": 7.5, "p99": 9.0}},
        "power_w": None, "power_source": "none: no meter", "energy_mj_per_inference": None, "temp_c": 51.0,
        "temps": {"cpu-thermal": 51.0}, "cpu_percent": 30.0, "rss_mb": 100.0, "dropped_frames": 0,
        "spool_depth": 0, "spool_dropped": 0, "runtime": "tflite", "model": "blazeface-short", "throttled": None,
        "reasons": {"throttled": "vcgencmd not found (not a Raspberry Pi?)"},
    }  # fmt: skip
    m.update(over)
    return m


def metrics(**over: object) -> Metrics:
    """A metrics payload as the device builds it (the contract's model, not a hand-made dict)."""
    return Metrics.model_validate(metrics_dict(**over))


def status(state: str, **over: object) -> Status:
    fields = {"version": "0.1.0", "runtime": "tflite", "model": "blazeface-short", "fallback": None,
              "board": None, "started_at": 1.0, "ts": 2.0}  # fmt: skip
    return Status(state=state, **(fields | over)) if state != "offline" else Status(state=state)


def test_seq_gaps_and_duplicates_are_counted() -> None:
    reg = Registry()
    for seq in (1, 2, 3, 7, 8, 8, 5, 9):
        reg.apply_detections("cam", seq, 1, 1000.0)
    row = reg.snapshot(1000.0)[0]
    assert row["seq_gaps"] == 3  # 4, 5, 6 missing when 7 arrived
    assert row["seq_dups"] == 2  # 8 again, 5 late
    assert row["seq_last"] == 9


def test_detections_per_minute_is_a_sliding_window() -> None:
    w = RateWindow(60)
    for t in range(100):
        w.add(1000.0 + t, 2)
    assert w.total(1099.5) == 120
    assert w.total(1150.0) == 2 * 9  # seconds 1091..1099 still inside
    assert w.total(2000.0) == 0


def test_lag_histogram_percentiles() -> None:
    h = LagHistogram()
    for ms in [5.0] * 98 + [1500.0, 7000.0]:
        h.add(ms)
    assert h.percentile(50) == 6.0
    assert h.percentile(99) == 1501.0
    assert h.summary()["max_ms"] == 7000.0


@pytest.mark.parametrize(
    ("register", "alerts", "row"),
    [
        (None, [], (None, None, None, None)),
        (0x0, [], (False, False, False, False)),
        (0x50005, ["throttled", "under-voltage"], (True, True, True, True)),  # both, now and since boot
        (0x50000, ["throttled-since-boot", "under-voltage-since-boot"], (False, False, True, True)),
        (0x10001, ["under-voltage"], (False, True, False, True)),
        (0x80008, ["throttled"], (True, False, True, False)),  # soft temperature limit: slowed down
    ],
)
def test_throttling_alerts_come_from_the_device_flags(register, alerts, row) -> None:
    t = None if register is None else Throttling.from_register(register)
    assert throttle_alerts(t) == alerts
    reg = Registry()
    now = time.time()
    reg.apply_status("pi", status("online"), now)
    reg.apply_metrics("pi", metrics(throttled=None if t is None else t.model_dump()), now)
    r = reg.snapshot(now)[0]
    assert (
        r["throttled"],
        r["under_voltage"],
        r["throttled_since_boot"],
        r["under_voltage_since_boot"],
    ) == row
    assert r["alerts"] == alerts
    assert r["throttled_raw"] == (None if t is None else f"0x{register:x}")


def test_alerts() -> None:
    reg = Registry(p90_alert_ms=50.0)
    now = time.time()
    reg.apply_status(
        "slow", status("online", fallback={"from": "edgetpu", "to": "tflite", "reason": "x"}), now
    )
    reg.apply_metrics("slow", metrics(latency_ms={"infer": {"p50": 60, "p90": 80, "p99": 90}}), now)
    for depth in (1, 5, 9, 20):
        reg.apply_metrics("spooly", metrics(spool_depth=depth, throttled=Throttling.from_register(1)), now)
    reg.apply_status("gone", status("offline"), now)
    rows = {r["device_id"]: r for r in reg.snapshot(now)}
    assert rows["slow"]["alerts"] == ["p90", "fallback"]
    assert rows["spooly"]["alerts"] == ["offline", "under-voltage", "spool-growing"]  # no status yet
    assert rows["gone"]["alerts"] == ["offline"]
    text = _render(list(rows.values()))
    assert "spool-growing" in text and "(fallback)" in text


def _render(rows: list[dict]) -> str:
    console = Console(record=True, width=220, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(rows, {"received": {"metrics": 1}, "lag_ms": {"p99_ms": 3.0}}, 50.0))
    return console.export_text()


def test_sort_rows_puts_missing_values_last_and_rejects_unknown_keys() -> None:
    rows = [{"device_id": "a", "fps": None}, {"device_id": "b", "fps": 3.0}, {"device_id": "c", "fps": 9.0}]
    assert [r["device_id"] for r in sort_rows(rows, "fps")] == ["c", "b", "a"]
    with pytest.raises(ConfigError, match="--sort 'colour'"):
        sort_rows(rows, "colour")


def test_monitor_ingest_without_a_broker() -> None:
    mon = Monitor(Registry())
    now = time.time()
    mon.handle("lookout/cam-1/metrics", json.dumps(metrics_dict()).encode(), now)
    mon.handle("lookout/cam-1/metrics", json.dumps(metrics_dict(temp_c="hot")).encode(), now)
    mon.handle(
        "lookout/cam-1/metrics",
        json.dumps(metrics_dict(temp_c=None)).encode().replace(b"null", b"NaN", 1),
        now,
    )
    mon.handle("lookout/cam-1/detections", b'{"v": 1, "seq": 1}', now)
    mon.handle("elsewhere/cam-1/metrics", b"{}", now)
    old = {k: v for k, v in metrics_dict().items() if k != "v"}  # a device older than the contract
    mon.handle("lookout/cam-1/metrics", json.dumps(old).encode(), now)
    mon.handle("lookout/cam-2/status", json.dumps({"v": 2, "state": "charging"}).encode(), now)
    rows = {r["device_id"]: r for r in mon.registry.snapshot(now)}
    assert rows["cam-1"]["temp_c"] == 51.0 and rows["cam-1"]["infer_p90_ms"] == 7.5
    assert rows["cam-1"]["reasons"] == {"throttled": "vcgencmd not found (not a Raspberry Pi?)"}
    assert rows["cam-1"]["malformed"] == 3 and rows["cam-1"]["unsupported_version"] == 1
    assert rows["cam-2"]["unsupported_version"] == 1 and rows["cam-2"]["state"] == "unknown"
    assert mon.stats.malformed == {"schema:metrics": 1, "json": 1, "schema:detections": 1, "topic": 1}
    assert mon.stats.unsupported_version == {"none": 1, "2": 1}
    assert mon.stats.received["metrics"] == 3  # the NaN one never parsed as JSON


def test_retention_prunes_old_rows(tmp_path) -> None:
    store = Store(tmp_path / "h.sqlite", retention_s=parse_duration("1h"))
    now = time.time()
    reg = Registry()
    reg.apply_metrics("cam", metrics(), now)
    rows = reg.snapshot(now)
    store.add_samples(rows, now - 7200)
    store.add_samples(rows, now - 1800)
    store.add_samples(rows, now)
    store.add_bench("cam", now - 7200, '{"model": "m", "host": {}, "results": []}')
    assert store.count() == 3
    assert store.prune(now) == 2
    assert store.count() == 2 and store.count("bench") == 0
    assert [round(s["ts"]) for s in store.samples(0)] == [round(now - 1800), round(now)]
    store.close()
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_bench_document_is_stored_once(tmp_path) -> None:
    store = Store(tmp_path / "h.sqlite")
    doc = '{"model": "m", "host": {}, "results": [{"runtime": "tflite"}]}'
    store.add_bench("cam", 1.0, doc)
    store.add_bench("cam", 2.0, doc)
    assert store.count("bench") == 1
    assert store.latest_bench(1.5) == {"cam": json.loads(doc)}


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("5", 5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0d", "3y"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)
