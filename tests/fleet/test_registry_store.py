"""Registry bookkeeping (seq gaps, windows, alerts), SQLite retention, the live view's rendering."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from rich.console import Console

from app.errors import ConfigError
from app.fleet.monitor import Monitor
from app.fleet.registry import Registry, throttle_flags
from app.fleet.store import Store, parse_duration
from app.fleet.view import render, sort_rows
from app.fleet.window import LagHistogram, RateWindow


def metrics(**over: object) -> dict:
    m = {
        "ts": time.time(), "fps": 9.5, "latency_ms": {"infer": {"p50": 5.0, "p90": 7.5, "p99": 9.0}},
        "power_w": None, "power_source": "none: no meter", "energy_mj_per_inference": None, "temp_c": 51.0,
        "cpu_percent": 30.0, "rss_mb": 100.0, "dropped_frames": 0, "spool_depth": 0, "runtime": "tflite",
        "model": "blazeface-short", "throttled": None,
    }  # fmt: skip
    m.update(over)
    return m


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
    ("raw", "expected"),
    [
        (None, (None, None)),
        (False, (False, None)),
        (0x50005, (True, True)),  # get_throttled: under-voltage + throttled now
        (0x50000, (False, False)),  # only "has occurred"
        ({"under_voltage_now": True, "throttled_now": False}, (False, True)),
        ({"throttled_now": True, "under_voltage_occurred": True}, (True, False)),
    ],
)
def test_throttle_flags(raw: object, expected: tuple) -> None:
    assert throttle_flags(raw) == expected


def test_alerts() -> None:
    reg = Registry(p90_alert_ms=50.0)
    now = time.time()
    reg.apply_status(
        "slow", {"state": "online", "fallback": {"from": "edgetpu", "to": "tflite", "reason": "x"}}, now
    )
    reg.apply_metrics("slow", metrics(latency_ms={"infer": {"p50": 60, "p90": 80, "p99": 90}}), now)
    for depth in (1, 5, 9, 20):
        reg.apply_metrics("spooly", metrics(spool_depth=depth, throttled={"under_voltage_now": True}), now)
    reg.apply_status("gone", {"state": "offline"}, now)
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
    mon = Monitor(Registry(), validate_every=1)
    now = time.time()
    mon.handle("lookout/cam-1/metrics", json.dumps(metrics()).encode(), now)
    mon.handle("lookout/cam-1/metrics", json.dumps(metrics(temp_c="hot")).encode(), now)
    mon.handle("lookout/cam-1/detections", b'{"seq": 1}', now)
    mon.handle("elsewhere/cam-1/metrics", b"{}", now)
    row = mon.registry.snapshot(now)[0]
    assert row["temp_c"] == 51.0 and row["infer_p90_ms"] == 7.5
    assert row["malformed"] == 2
    assert mon.stats.malformed == {"schema:metrics": 1, "schema:detections": 1, "topic": 1}


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
