"""`lookout fleet report` from a real SQLite history: events on the time axis, honest axes, no-metrics devices,
the runtime comparison grouped by model. The PNGs are kept under the test's tmp dir to look at."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.fleet.report import comparison_chart, device_chart, write_report
from app.fleet.store import SAMPLE_COLUMNS, Store


def _sample(dev: str, **kv: object) -> dict:
    return dict.fromkeys(SAMPLE_COLUMNS) | {"device_id": dev, "online": True, "state": "online"} | kv


def _bench(model: str, runtimes: dict[str, float], cpu: str) -> str:
    results = [{"runtime": rt, "latency_ms": {"p50": p90 / 1.2, "p90": p90, "p99": p90 * 1.3},
                "throughput_fps": 1000 / p90, "rss_mb": 120.0} for rt, p90 in runtimes.items()]  # fmt: skip
    return json.dumps({"model": model, "host": {"cpu": cpu}, "results": results})


def test_report_marks_events_keeps_axes_honest_and_groups_runtimes_by_model(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite", monitor="m")
    now = time.time()
    t0 = now - 600
    fb = {"from": "edgetpu", "to": "tflite", "reason": "Edge TPU not found"}
    for i in range(60):
        runtime = "edgetpu" if i < 30 else "tflite"
        row = _sample("busy", runtime=runtime, model="ssd", fps=30.0 - 0.3 * (i % 2), infer_p50_ms=5.0,
                      infer_p90_ms=6.0, infer_p99_ms=8.0, temp_c=55.0 + (i % 3), power_w=None,
                      power_source="none: no power meter configured", fallback=fb if i >= 30 else None)  # fmt: skip
        store.add_samples([row], t0 + 10 * i)
    store.add_samples([_sample("quiet", runtime="tflite", model="ssd")], now - 5)
    store.add_bench(
        "busy", now, _bench("ssd", {"tflite": 9.0, "edgetpu": 3.0}, "Raspberry Pi 5 Model B Rev 1.0")
    )
    store.add_bench("quiet", now, _bench("blazeface", {"tflite": 4.0, "executorch": 6.0}, "Raspberry Pi 4"))

    info = device_chart("busy", store.samples(0, "busy"), tmp_path / "busy.png", 100.0)
    assert info["ylim"]["fps"][0] == 0.0 and info["ylim"]["fps"][1] >= 30.0  # a 1 % dip is not a cliff
    assert info["ylim"]["temperature"][1] - info["ylim"]["temperature"][0] >= 10.0
    assert [(e.kind, e.text) for e in info["events"]] == [
        ("swap", "swap edgetpu → tflite"),
        ("fallback", "fallback edgetpu → tflite: Edge TPU not found"),
    ]

    index = write_report(store, tmp_path / "report", since_s=3600).read_text()
    store.close()
    assert (tmp_path / "report" / "device-busy.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "report" / "device-quiet.png").exists()
    assert "no metrics yet" in index and "1970" not in index
    assert "· 2 devices ·" in index
    assert (
        "<h3>ssd <small>1 device</small></h3>" in index
        and "<h3>blazeface <small>1 device</small></h3>" in index
    )
    assert index.index("<h3>blazeface") < index.index("<h3>ssd")
    assert (tmp_path / "report" / "runtimes.png").read_bytes().startswith(b"\x89PNG")


def test_the_comparison_chart_never_boxes_simulated_with_measured(tmp_path: Path) -> None:
    row = {"model": "ssd", "runtime": "tflite", "error": None}
    rows = [row | {"p90_ms": 4.0, "simulated": False}] + [
        row | {"p90_ms": 40.0 + i, "simulated": True} for i in range(5)
    ]
    assert comparison_chart(rows, tmp_path / "c.png") == ["ssd", "ssd (simulated)"]
    assert comparison_chart([row | {"p90_ms": None, "simulated": False}], tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_a_simulated_devices_history_is_marked_in_the_report(tmp_path: Path) -> None:
    """fleet_load's synthetic fps and p90 never stand bare beside measured ones (its status version says so)."""
    from app.fleet.table import SIM_VERSION

    store = Store(tmp_path / "h.sqlite", monitor="m")
    now = time.time()
    store.add_samples([_sample("sim-0001", fps=30.0, infer_p90_ms=3.3, version=SIM_VERSION)], now - 5)
    store.add_samples([_sample("real", fps=29.0, infer_p90_ms=7.0, version="0.3.0")], now - 5)
    index = write_report(store, tmp_path / "report", since_s=3600).read_text()
    store.close()
    assert "sim-0001 (sim)" in index and "real (sim)" not in index
    assert "some devices are simulated" in index
