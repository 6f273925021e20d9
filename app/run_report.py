"""The run report: what `lookout run --report FILE` writes at exit (and sim and the tests read)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import __version__
from app.pipeline import STAGES
from app.runtimes.probe import versions_in_use

if TYPE_CHECKING:
    from app.measure.latency import StageHistograms
    from app.pipeline import Pipeline
    from app.status import SourceState

SUMMARY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms", "count")


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def build_report(
    *,
    device_id: str,
    pipeline: Pipeline,
    totals: StageHistograms,
    wall_s: float,
    source: SourceState,
    swaps: list[dict[str, Any]],
    energy: dict[str, Any],
    detections_published: int,
    started_at: float,
) -> dict[str, Any]:
    """Frames, rates, per-stage latency summaries, runtime (with its library versions) and fallback,
    source health, swaps, energy."""
    engine = pipeline.engine
    summary = totals.summary()
    stages = {
        s: {k: _round(summary.get(s, {}).get(k)) for k in SUMMARY_KEYS} for s in (*STAGES, "end_to_end")
    }
    return {
        "version": __version__,
        "device_id": device_id,
        "model": engine.model,
        "frames": pipeline.frames,
        "fps": round(pipeline.fps, 2),
        "wall_s": round(wall_s, 3),
        "runtime": engine.runtime,
        "runtime_versions": versions_in_use(type(engine.opened.runtime)),
        "requested_runtime": engine.requested_runtime,
        "fallback": engine.fallback,
        "artifact": str(engine.opened.artifact_path),
        "warmup": engine.warmup,
        "stages": stages,
        "detections_total": pipeline.detections_total,
        "dropped_frames": pipeline.dropped_frames,
        "detections_published": detections_published,
        "errors": pipeline.errors,
        "last_error": pipeline.last_error,
        "source": {
            "state": source.state,
            "degraded_events": source.degraded_events,
            "reconnects": getattr(pipeline.source, "reconnects", None),
            "failures": getattr(pipeline.source, "failures", None),
        },
        "max_frame_gap_ms": round(pipeline.max_gap_ms, 3),
        "swaps": swaps,
        "energy": energy,
        "started_at": started_at,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The report as indented JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
