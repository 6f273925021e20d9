"""`lookout run --output FILE.jsonl`: one JSON line per processed frame, for people and scripts.

Each line: frame, source (image file name for an image folder, the URI otherwise, its password masked
by app/redact.py's rule: `rtsp://user:***@cam/stream`), ts, model, runtime,
detections (label, score, box in source pixels, keypoints when the model gives them), latency_ms.
"-" writes to stdout. Lines are flushed one by one, so `tail -f` and pipes see each frame at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from app.errors import ConfigError
from app.redact import redact


def frame_record(result: Any) -> dict[str, Any]:
    """The JSON object of one processed frame (app.pipeline.FrameResult)."""
    return {
        "frame": result.index,
        "source": redact(result.source),
        "ts": round(result.ts, 6),
        "model": result.model,
        "runtime": result.runtime,
        "detections": [d.to_json() for d in result.detections],
        "latency_ms": result.latency_ms,
    }


class JsonlWriter:
    """Appends frame records to a file (created with its folder) or stdout."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        if self.target == "-":
            self._f: IO[str] = sys.stdout
            self._own = False
        else:
            path = Path(self.target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise ConfigError(f"--output {path}: cannot write: {exc.strerror or exc}") from None
            self._own = True

    def write(self, result: Any) -> None:
        self._f.write(json.dumps(frame_record(result), separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()
