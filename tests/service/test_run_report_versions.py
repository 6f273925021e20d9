"""The run report names the versions of the runtime libraries the run loaded (issue: "doctor and the run
report name the versions in use"), from the same `versions` doctor's runtime probe uses."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path


def test_report_names_the_litert_version_in_use(lookout_cmd, clean_env, demo_video, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    proc = subprocess.run(
        [*lookout_cmd, "run", "--source", str(demo_video), "--model", "blazeface-short", "--runtime", "tflite",
         "--max-frames", "3", "--no-mqtt", "--report", str(report_path), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, env=clean_env, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["runtime"] == "tflite"
    assert report["runtime_versions"] == {"ai-edge-litert": importlib.metadata.version("ai-edge-litert")}
