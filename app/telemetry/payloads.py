"""What the device publishes, shaped in one place: detections, metrics and status fields.

Builders take plain data (no runtime or pipeline objects), so telemetry stays below them; the service
calls them and hands the dicts to `Telemetry.publish_*`, which validates them against the shipped
JSON Schemas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PERCENTILES = ("p50", "p90", "p99")


def detections_payload(
    *,
    ts: float,
    frame: int,
    model: str,
    runtime: str,
    detections: Iterable[Mapping[str, Any]],
    latency_ms: Mapping[str, float],
) -> dict[str, Any]:
    """One processed frame's detections (the telemetry layer adds the persisted `seq`)."""
    return {
        "ts": ts,
        "frame": frame,
        "model": model,
        "runtime": runtime,
        "detections": list(detections),
        "latency_ms": dict(latency_ms),
    }


def latency_percentiles(summary: Mapping[str, Mapping[str, float]], stages: Iterable[str]) -> dict[str, Any]:
    """{stage: {p50, p90, p99}} in ms from a histogram summary ({stage: {"p50_ms": ...}})."""
    return {s: {k: summary[s][f"{k}_ms"] for k in PERCENTILES} for s in stages if s in summary}


def metrics_payload(
    *,
    ts: float,
    fps: float,
    latency_ms: Mapping[str, Any],
    energy: Mapping[str, Any],
    health: Mapping[str, Any],
    dropped_frames: int,
    spool_depth: int | None,
    runtime: str,
    model: str,
) -> dict[str, Any]:
    """One metrics interval: rates, stage latency percentiles, power and energy with their source, health."""
    return {
        "ts": ts,
        "fps": round(fps, 2),
        "latency_ms": dict(latency_ms),
        "power_w": energy.get("power_w"),
        "power_source": energy.get("power_source"),
        "energy_mj_per_inference": energy.get("energy_mj_per_inference"),
        "temp_c": health.get("temp_c"),
        "cpu_percent": health.get("cpu_percent"),
        "rss_mb": health.get("rss_mb"),
        "dropped_frames": dropped_frames,
        "spool_depth": spool_depth,
        "runtime": runtime,
        "model": model,
        "throttled": health.get("throttled"),
    }


def status_fields(
    *,
    state: str,
    runtime: str | None,
    model: str | None,
    fallback: Mapping[str, str] | None,
    started_at: float,
    reason: str = "",
) -> dict[str, Any]:
    """The device's own part of the retained status (telemetry adds version, spool and ts)."""
    fields: dict[str, Any] = {
        "state": state,
        "runtime": runtime,
        "model": model,
        "fallback": dict(fallback) if fallback else None,
        "started_at": started_at,
    }
    if reason:
        fields["reason"] = reason
    return fields
