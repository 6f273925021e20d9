"""Runtime comparison across the fleet from the devices' bench documents, grouped by model or by board.

A bench document is what `lookout bench --json` publishes on `<prefix>/<id>/bench` (retained). The board
is the bench host's CPU/board model line (`host.cpu`: "Raspberry Pi 5 Model B Rev 1.0" on a Pi, the CPU
model name elsewhere). Simulated documents (fleet_load) are marked as such and never share a group (nor a
median) with measured ones: by board they are "simulated (fleet_load)", by model a group of their own.
"""

from __future__ import annotations

import statistics
from typing import Any

GROUPINGS = ("model", "board")
METRICS = ("p50_ms", "p90_ms", "throughput_fps", "energy_mj_per_inference", "rss_mb")


def board_of(host: Any) -> str:
    """The board a bench ran on, from its host object."""
    if not isinstance(host, dict):
        return "unknown"
    if host.get("simulated"):
        return "simulated (fleet_load)"
    for key in ("board", "cpu", "machine"):
        if isinstance(host.get(key), str) and host[key].strip():
            return host[key].strip()
    return "unknown"


def bench_rows(benches: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per device and runtime from {device_id: bench document}."""
    rows = []
    for dev, doc in sorted(benches.items()):
        results = doc.get("results") if isinstance(doc, dict) else None
        for r in results if isinstance(results, list) else []:
            if not isinstance(r, dict):
                continue
            lat = r.get("latency_ms") if isinstance(r.get("latency_ms"), dict) else {}
            power = r.get("power") if isinstance(r.get("power"), dict) else {}
            host = doc.get("host")
            rows.append(
                {
                    "device_id": dev,
                    "model": str(doc.get("model") or "unknown"),
                    "board": board_of(host),
                    "runtime": str(r.get("runtime")),
                    "p50_ms": _num(lat.get("p50")),
                    "p90_ms": _num(lat.get("p90")),
                    "throughput_fps": _num(r.get("throughput_fps")),
                    "rss_mb": _num(r.get("rss_mb")),
                    "energy_mj_per_inference": _num(r.get("energy_mj_per_inference")),
                    "power_source": power.get("source"),
                    "error": r.get("error"),
                    "simulated": bool(isinstance(host, dict) and host.get("simulated")),
                    "ts": doc.get("ts"),
                }
            )
    return rows


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def n_devices(n: int) -> str:
    """ "1 device", "3 devices": the count as the pages and the report print it."""
    return f"{n} device" if n == 1 else f"{n} devices"


def compare(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Groups (by model or board), each with one summary per runtime: medians across devices."""
    if by not in GROUPINGS:
        raise ValueError(f"group by {by!r}: expected one of {GROUPINGS}")
    groups = []
    # simulated documents (fleet_load) never share a median with measured ones: a group of their own
    for key, sim in sorted({(r[by], r["simulated"]) for r in rows}):
        mine = [r for r in rows if r[by] == key and r["simulated"] == sim]
        runtimes = []
        for rt in sorted({r["runtime"] for r in mine}):
            sel = [r for r in mine if r["runtime"] == rt]
            ok = [r for r in sel if not r["error"]]
            runtimes.append(
                {"runtime": rt, "devices": len({r["device_id"] for r in sel}), "errors": len(sel) - len(ok)}
                | {f"median_{m}": _median(ok, m) for m in METRICS}
            )
        runtimes.sort(key=lambda s: (s["median_p90_ms"] is None, s["median_p90_ms"] or 0.0))
        groups.append(
            {
                by: key,
                "devices": len({r["device_id"] for r in mine}),
                "simulated": sim,
                "runtimes": runtimes,
            }
        )
    return groups
