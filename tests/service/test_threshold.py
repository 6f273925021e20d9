"""The score threshold has one owner: the model manifest's value, unless the config sets one; `run`
and `bench` decode with the same threshold (before, `run` always used the config's default 0.5 while
`bench` used the manifest's 0.75, and the int8 model reported a "face" on the cat photo)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import pytest

CAT = "chelsea"


def _run_and_bench(lookout_cmd, env, cfg: Path, folder: Path, tmp_path: Path) -> tuple[int, int]:
    report, bench = tmp_path / f"{cfg.stem}-run.json", tmp_path / f"{cfg.stem}-bench.json"
    run = [*lookout_cmd, "run", "--config", str(cfg), "--source", str(folder), "--max-frames", "1",
           "--no-mqtt", "--report", str(report)]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, env=env, timeout=120)
    b = [
        *lookout_cmd,
        "bench",
        "--config",
        str(cfg),
        "--runtime",
        "tflite",
        "--frames",
        "5",
        "--json",
        str(bench),
    ]
    subprocess.run(b, check=True, capture_output=True, env=env, timeout=300)
    result = json.loads(bench.read_text())["results"][0]
    assert result["artifact"] == "tflite-int8"
    return json.loads(report.read_text())["detections_total"], result["detections"][CAT]


@pytest.mark.slow
def test_run_and_bench_use_the_same_threshold(lookout_cmd, clean_env, no_face_photos_bgr, tmp_path: Path):
    folder = tmp_path / "cat"
    folder.mkdir()
    cv2.imwrite(str(folder / f"{CAT}.png"), no_face_photos_bgr[CAT])
    base = '[runtime]\ntype = "tflite"\nartifact = "tflite-int8"\n[mqtt]\nenabled = false\n'
    manifest_cfg = tmp_path / "manifest.toml"
    manifest_cfg.write_text(base)
    override_cfg = tmp_path / "override.toml"
    override_cfg.write_text(base + "[pipeline]\nscore_threshold = 0.5\n")

    run_m, bench_m = _run_and_bench(lookout_cmd, clean_env, manifest_cfg, folder, tmp_path)
    run_o, bench_o = _run_and_bench(lookout_cmd, clean_env, override_cfg, folder, tmp_path)
    assert run_m == bench_m == 0, "the manifest's threshold (0.75) rejects the cat"
    assert run_o == bench_o >= 1, "a threshold set in the config applies to both"
