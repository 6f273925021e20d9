"""Build cache and the torch rebuild's agreement with LiteRT, on the real model and the real photo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from app.modelbuild.build import RECIPES, build_model
from app.zoo import build_key, load_manifest, sha256_file


def test_build_cache_hit_does_nothing(zoo_copy: Path) -> None:
    m = load_manifest("blazeface-short", zoo_copy)
    keys = [k for k in RECIPES if k in m.artifacts]
    assert {"pte", "ptl", "pte-int8", "tflite-int8"} <= set(keys)
    before = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in m.dir.iterdir()}
    results = build_model(m, keys)
    assert [r.status for r in results] == ["up to date"] * len(keys)
    after = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in m.dir.iterdir()}
    assert after == before


def test_cache_key_is_source_bytes_plus_recipe(models_dir: Path) -> None:
    m = load_manifest("blazeface-short", models_dir)
    src = m.verify_artifact("tflite")
    for key, (recipe, *_rest) in RECIPES.items():
        if key in m.artifacts:
            assert m.artifacts[key].build_input_sha256 == build_key(src, recipe)


def test_changed_artifact_is_rebuilt(zoo_copy: Path) -> None:
    m = load_manifest("blazeface-short", zoo_copy)
    ptl = m.artifact_path("ptl")
    ptl.write_bytes(b"corrupt")
    [result] = build_model(m, ["ptl"])
    assert result.status == "built"
    assert load_manifest("blazeface-short", zoo_copy).verify_artifact("ptl") == ptl


def test_verify_cli_reports_a_bad_artifact(
    zoo_copy: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    m = load_manifest("blazeface-short", zoo_copy)
    m.artifact_path("pte").write_bytes(b"\x00" * 16)
    res = subprocess.run(
        [*lookout_cmd, "models", "--models-dir", str(zoo_copy), "verify"],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "blazeface-short pte: sha256 mismatch for" in lines[0]


def test_torch_rebuild_agrees_with_litert_on_astronaut(models_dir: Path) -> None:
    import torch

    from app.modelbuild.build import torch_module
    from app.modelbuild.check import run_artifact
    from app.modelbuild.images import photo_rgb, to_input

    m = load_manifest("blazeface-short", models_dir)
    src = m.verify_artifact("tflite")
    x = to_input(photo_rgb("astronaut"), m)
    ref = run_artifact(src, "tflite", x)
    with torch.no_grad():
        got = [t.numpy() for t in torch_module(src)(torch.from_numpy(x))]
    assert [g.shape for g in got] == [r.shape for r in ref] == [(1, 896, 16), (1, 896, 1)]
    for r, g in zip(ref, got, strict=True):
        assert np.abs(r - g).max() <= 1e-3 * np.abs(r).max()
    assert ref[1].max() > 2.0  # the face is there: the comparison is not on an empty output


def test_exported_fp32_artifacts_agree_and_int8_find_the_face(models_dir: Path) -> None:
    from app.detection import iou
    from app.modelbuild.check import compare

    m = load_manifest("blazeface-short", models_dir)
    face = np.array([179.0, 81.0, 273.0, 176.0])
    for key in ("pte", "ptl", "pte-int8", "tflite-int8"):
        r = compare(m, key)
        assert iou(np.array(r["box"]), face) >= 0.9, (key, r)
        if m.artifacts[key].precision == "int8":
            assert r["score"] >= 0.85, (key, r)
        else:
            assert r["max_rel"] <= 1e-3 and r["score"] >= 0.9, (key, r)
