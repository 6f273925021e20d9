"""`lookout doctor`: a runtime that imports but has no artifact of the model to run is "not run" (JSON
`ok: null`), never counted as the pipeline's working runtime; the configured artifact is the one run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path


def model_without(models_dir: Path, dest: Path, *keys: str) -> Path:
    """A copy of blazeface-short under dest/ whose manifest lists no artifacts `keys` (files kept)."""
    shutil.copytree(models_dir / "blazeface-short", dest / "blazeface-short")
    manifest = dest / "blazeface-short" / "model.toml"
    headers = {f"[artifacts.{key}]" for key in keys}
    blocks = manifest.read_text().split("\n\n")  # one table per block in the zoo's manifests
    manifest.write_text("\n\n".join(b for b in blocks if b.split("\n", 1)[0] not in headers))
    return dest


def doctor(lookout_cmd: list[str], env: dict, tmp_path: Path, runtime: str) -> tuple[dict, bool]:
    """doctor --json on models under tmp_path/models with this [runtime] body: (checks by (area, name), can_run)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'models_dir = "{tmp_path / "models"}"\n[mqtt]\nenabled = false\n[runtime]\n{runtime}\n')
    proc = subprocess.run(
        [*lookout_cmd, "doctor", "--json", "--no-probe", "--config", str(cfg)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    return {(c["area"], c["name"]): c for c in out["checks"]}, out["can_run"]


def test_runtime_without_an_artifact_is_not_run_and_not_the_working_pipeline_runtime(
    lookout_cmd, clean_env, models_dir: Path, tmp_path: Path
) -> None:
    model_without(models_dir, tmp_path / "models", "ptl")
    checks, can_run = doctor(lookout_cmd, clean_env, tmp_path, 'type = "torchscript-lite"')
    row = checks[("runtime", "torchscript-lite")]
    assert row["ok"] is None
    assert row["detail"].endswith("imported; no 'ptl' artifact for model blazeface-short, not run"), row
    pipeline_runtime = checks[("pipeline", "runtime")]
    assert (
        pipeline_runtime["ok"] is False and pipeline_runtime["detail"] == f"torchscript-lite: {row['detail']}"
    )
    assert can_run is False
    assert checks[("runtime", "tflite")]["ok"] is True  # the model's other runtimes still ran


def test_the_configured_artifact_is_the_one_the_runtime_runs(
    lookout_cmd, clean_env, models_dir: Path, tmp_path: Path
) -> None:
    model_without(models_dir, tmp_path / "models", "tflite")
    checks, can_run = doctor(lookout_cmd, clean_env, tmp_path, 'type = "tflite"\nartifact = "tflite-int8"')
    tflite = checks[("runtime", "tflite")]
    assert tflite["ok"] is True and "ran blazeface-short:tflite-int8 once" in tflite["detail"]
    assert can_run is True
