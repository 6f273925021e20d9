"""`lookout bench` end to end (real models, real subprocesses) and its comparison helpers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.measure.bench import LATENCY_KEYS, RESULT_KEYS, max_abs_diff, mean_iou, parse_runtimes
from app.measure.hostinfo import cpu_model
from app.zoo import load_manifest

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0b

Revision\t: d04170
Serial\t\t: 1c5b4e2f9b3a7c11
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_cpu_model_from_cpuinfo(tree, tmp_path: Path) -> None:
    tree(tmp_path / "pi", {"proc/cpuinfo": PI5_CPUINFO})
    assert cpu_model(tmp_path / "pi") == "Raspberry Pi 5 Model B Rev 1.0"
    tree(
        tmp_path / "x86",
        {"proc/cpuinfo": "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n"},
    )
    assert cpu_model(tmp_path / "x86") == "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"


def test_mean_iou_matches_greedily_and_counts_misses() -> None:
    face = {"label": "face", "score": 0.9, "box": [0, 0, 10, 10]}
    shifted = {"label": "face", "score": 0.8, "box": [0, 0, 10, 5]}  # IoU 0.5 with face
    assert mean_iou({"a": [face]}, {"a": [face]}) == 1.0
    assert mean_iou({"a": [face]}, {"a": [shifted]}) == pytest.approx(0.5)
    assert mean_iou({"a": [face], "b": []}, {"a": [face, shifted], "b": []}) == pytest.approx(
        0.5
    )  # extra = 0
    assert mean_iou({"a": []}, {"a": []}) is None


def test_max_abs_diff() -> None:
    import numpy as np

    a = {"img": [np.zeros((1, 4), np.float32), np.ones((1, 2), np.float32)]}
    b = {"img": [np.full((1, 4), 0.25, np.float32), np.ones((1, 2), np.float32)]}
    assert max_abs_diff(a, b) == (0.25, None)
    diff, why = max_abs_diff(a, {"img": [np.zeros((1, 3), np.float32), np.ones((1, 2), np.float32)]})
    assert diff is None and "shape" in why


def test_bad_runtime_list_is_one_line_error(lookout_cmd: list[str], clean_env: dict[str, str]) -> None:
    with pytest.raises(Exception, match="unknown runtime 'nope'"):
        parse_runtimes("tflite,nope")
    proc = subprocess.run([*lookout_cmd, "bench", "--runtime", "tflite,tflite"], capture_output=True, text=True,
                          env=clean_env, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "listed twice" in proc.stderr


def _available_runtimes(models_dir: Path) -> list[str]:
    """tflite plus the acceptance runtimes whose artifact the manifest already has."""
    m = load_manifest("blazeface-short", models_dir)
    return ["tflite"] + [
        r for r, key in (("executorch", "pte"), ("torchscript-lite", "ptl")) if key in m.artifacts
    ]


@pytest.mark.slow
def test_bench_end_to_end(lookout_cmd, clean_env, models_dir: Path, tmp_path: Path) -> None:
    runtimes = _available_runtimes(models_dir)
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    cmd = [*lookout_cmd, "bench", "--model", "blazeface-short", "--runtime", ",".join(runtimes),
           "--frames", "40", "--warmup", "3", "--json", str(out), "--plot", str(png)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"model", "host", "results"} and report["model"] == "blazeface-short"
    assert {"cpu", "cores", "os", "python", "runtimes", "power_meter"} <= set(report["host"])
    assert [r["runtime"] for r in report["results"]] == runtimes
    for r in report["results"]:
        assert set(RESULT_KEYS) <= set(r), set(RESULT_KEYS) - set(r)
        lat = r["latency_ms"]
        assert set(LATENCY_KEYS) <= set(lat)
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["load_s"] > 0 and r["first_inference_ms"] > 0 and r["rss_mb"] > 10
        assert r["queries"] >= 40 and r["throughput_fps"] > 0
        assert (
            r["model_bytes"]
            == (
                models_dir
                / "blazeface-short"
                / load_manifest("blazeface-short", models_dir).artifacts[r["artifact"]].file
            )
            .stat()
            .st_size
        )
        # this machine has no meter configured: null, with the reason in the source
        assert r["power"]["mean_w"] is None and r["energy_mj_per_inference"] is None
        assert r["power"]["source"] == "none: no power meter configured"
        assert r["detections"]["astronaut"] == 1 and r["detections"]["coffee"] == 0
    for r in report["results"][1:]:
        assert r["agreement"]["reference"] == "tflite"
        assert r["agreement"]["max_abs_diff"] is not None and r["agreement"]["mean_iou"] > 0.8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "p90" in proc.stdout and "tflite" in proc.stdout


def test_bench_runs_on_a_device_install_without_scikit_image(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """A device venv has no scikit-image: the agreement photos come from the package."""
    import os

    site = tmp_path / "site"
    (site / "skimage").mkdir(parents=True)
    (site / "skimage" / "__init__.py").write_text("raise ImportError('scikit-image is not on a device')\n")
    env = {**clean_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), clean_env.get("PYTHONPATH")]))}
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [*lookout_cmd, "bench", "--model", "blazeface-short", "--runtime", "tflite", "--frames", "5",
         "--json", str(out)], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["results"][0]["detections"]["astronaut"] == 1


def test_a_workers_peak_memory_is_its_own_not_its_parents() -> None:
    """getrusage's ru_maxrss survives fork and exec: a bench worker started by a 125 MB service said 125 MB for
    every runtime (the fleet's /runtimes page showed it). The worker's own peak is what is reported."""
    import subprocess
    import sys

    fat = bytearray(300 * 1024 * 1024)
    fat[::4096] = b"\x01" * len(fat[::4096])  # touch every page: the parent really holds 300 MB
    code = "from app.measure.bench_worker import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert float(out.stdout) < 200, out.stdout  # numpy + the worker module: tens of MB, not the parent's 300
    del fat


def test_a_bench_of_an_isolated_config_measures_the_runtime_in_its_worker(tmp_path: Path) -> None:
    """A hot-swapped device runs torch runtimes with isolate = true; its cmd/bench passed that on, so each
    worker ran its runtime in yet another child: every runtime showed the worker's ~70 MB and paid the hop."""
    from app.measure.bench import BenchOptions, run_bench

    cfg = tmp_path / "c.toml"
    cfg.write_text('[runtime]\ntype = "executorch"\nisolate = true\n[meter]\ntype = "none"\n')
    result, _ = run_bench(
        BenchOptions(
            model="blazeface-short", runtimes=["tflite", "torchscript-lite"], frames=20, config=str(cfg)
        )
    )
    rss = {r["runtime"]: r["rss_mb"] for r in result["results"]}
    assert rss["torchscript-lite"] > rss["tflite"] + 100, rss  # torch lives in the worker it is measured in
