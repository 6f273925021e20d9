"""/runtimes and the report compare benches across the fleet: simulated documents (fleet_load) never share
a group or a median with measured ones."""

from __future__ import annotations

from app.fleet.runtimes import compare


def _row(device: str, p90: float, simulated: bool) -> dict:
    return {
        "device_id": device, "model": "blazeface-short", "board": "AMD EPYC", "runtime": "tflite",
        "p50_ms": p90 / 2, "p90_ms": p90, "throughput_fps": 1000 / p90, "rss_mb": 90.0,
        "energy_mj_per_inference": None, "power_source": "none", "error": None, "simulated": simulated, "ts": 1.0,
    }  # fmt: skip


def test_measured_and_simulated_benches_are_compared_apart() -> None:
    rows = [_row("vm-cam-1", 1.1, False)] + [_row(f"sim-{i:04d}", 9.0 + i, True) for i in range(9)]
    groups = compare(rows, "model")
    assert [(g["model"], g["simulated"], g["devices"]) for g in groups] == [
        ("blazeface-short", False, 1),
        ("blazeface-short", True, 9),
    ]
    measured = groups[0]["runtimes"][0]
    assert measured["runtime"] == "tflite" and measured["median_p90_ms"] == 1.1  # not the median of all ten
