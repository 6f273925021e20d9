"""`lookout run` end to end in a subprocess: real video, real models, every runtime available here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPORT_KEYS = (
    "frames",
    "fps",
    "runtime",
    "requested_runtime",
    "fallback",
    "stages",
    "detections_total",
    "dropped_frames",
)


def run_lookout(cmd: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def read_report(path: Path) -> dict:
    report = json.loads(path.read_text())
    for key in REPORT_KEYS:
        assert key in report, key
    for stage in ("capture", "preprocess", "infer", "postprocess", "publish"):
        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
            assert isinstance(report["stages"][stage][k], float), (stage, k, report["stages"][stage])
    return report


@pytest.mark.parametrize("runtime", ["tflite", "executorch", "torchscript-lite"])
def test_run_writes_report_with_every_key(
    runtime, demo_video, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    report_path = tmp_path / "r.json"
    proc = run_lookout(
        [
            *lookout_cmd,
            "run",
            "--source",
            str(demo_video),
            "--model",
            "blazeface-short",
            "--runtime",
            runtime,
            "--max-frames",
            "100",
            "--no-mqtt",
            "--report",
            str(report_path),
        ],
        clean_env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = read_report(report_path)
    assert report["frames"] == 100
    assert report["runtime"] == runtime
    assert report["requested_runtime"] == runtime
    assert report["fallback"] is None
    assert report["fps"] > 0
    assert report["stages"]["infer"]["count"] == 100
    # the demo video shows the astronaut's face for most of its length
    assert report["detections_total"] >= 50


def test_edgetpu_falls_back_to_cpu_here(demo_video, lookout_cmd, clean_env, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    proc = run_lookout(
        [
            *lookout_cmd,
            "run",
            "--runtime",
            "edgetpu",
            "--model",
            "blazeface-short",
            "--source",
            str(demo_video),
            "--max-frames",
            "50",
            "--no-mqtt",
            "--report",
            str(report_path),
        ],
        clean_env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = read_report(report_path)
    assert report["frames"] == 50
    assert report["requested_runtime"] == "edgetpu"
    assert report["runtime"] == "tflite"
    fb = report["fallback"]
    assert fb["from"] == "edgetpu" and fb["to"] == "tflite"
    assert "libedgetpu" in fb["reason"] or "device" in fb["reason"].lower()


def test_edgetpu_with_fallback_fail_exits_2(demo_video, clean_env, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[runtime]\ntype = "edgetpu"\nfallback = "fail"\n')
    proc = run_lookout(
        [
            sys.executable,
            "-m",
            "app",
            "run",
            "--config",
            str(cfg),
            "--source",
            str(demo_video),
            "--max-frames",
            "5",
            "--no-mqtt",
        ],
        clean_env,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "edgetpu" in proc.stderr.lower()


def test_litert_run_never_imports_torch(demo_video, clean_env, tmp_path: Path) -> None:
    """The CLI's own code path for a LiteRT run, inspected in a fresh interpreter."""
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"rc = main(['run', '--source', {str(demo_video)!r}, '--model', 'blazeface-short', '--runtime', 'tflite',"
        " '--max-frames', '20', '--no-mqtt'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'executorch', 'torchao'))\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda d: d.joinpath("face_detection_short_range.tflite").write_bytes(b"TFL3" * 10), "sha256"),
        (lambda d: d.joinpath("face_detection_short_range.tflite").unlink(), "missing"),
    ],
)
def test_bad_artifact_is_one_line_exit_2(
    make, expect, demo_video, clean_env, tmp_path: Path, models_dir: Path
) -> None:
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(models_dir / "blazeface-short", copy / "blazeface-short")
    make(copy / "blazeface-short")
    proc = run_lookout(
        [
            sys.executable,
            "-m",
            "app",
            "run",
            "--models-dir",
            str(copy),
            "--model",
            "blazeface-short",
            "--runtime",
            "tflite",
            "--source",
            str(demo_video),
            "--max-frames",
            "5",
            "--no-mqtt",
        ],
        clean_env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "face_detection_short_range.tflite" in lines[0]
    assert expect in lines[0].lower()
