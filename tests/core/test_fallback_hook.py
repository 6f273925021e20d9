"""Doctor and selection ask the same plugin hooks, so they agree on whether the configured runtime runs
here and what runs instead; a third-party accelerator plugin falls back without touching the core."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HAILO_PLUGIN = """
from typing import ClassVar, Literal

from app.errors import RuntimeUnavailable
from app.runtimes.base import Runtime, RuntimeConfig, Substitute, switch_runtime
from app.runtimes.litert import LiteRTConfig


class HailoConfig(RuntimeConfig):
    type: Literal["hailo"] = "hailo"


class HailoRuntime(Runtime[HailoConfig]):
    name: ClassVar[str] = "hailo"
    config_model: ClassVar[type[RuntimeConfig]] = HailoConfig
    default_artifact: ClassVar[str] = "hef"

    def unusable_reason(self, options, manifest, *, probe=True):
        node = self.roots.dev / "hailo0"
        return None if node.exists() else f"no Hailo-8 at {node}"

    def substitute(self, options, manifest, reason):
        return Substitute("tflite", LiteRTConfig.model_validate(switch_runtime("tflite", options)), "tflite")

    def load(self, artifact, options):
        raise RuntimeUnavailable("this test plugin has no Hailo runtime")

    def infer(self, x):
        raise RuntimeUnavailable("this test plugin has no Hailo runtime")
"""


def _doctor_and_run(lookout_cmd, env, cfg: Path, tmp_path: Path) -> tuple[dict, dict]:
    doc = subprocess.run([*lookout_cmd, "doctor", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert doc.returncode == 0, doc.stderr
    checks = {(c["area"], c["name"]): c for c in json.loads(doc.stdout)["checks"]}
    report = tmp_path / f"{cfg.stem}.json"
    run = subprocess.run([*lookout_cmd, "run", "--config", str(cfg), "--source", "synthetic", "--max-frames", "3",
                          "--no-mqtt", "--report", str(report)], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return checks.get(("pipeline", "fallback"), {}), json.loads(report.read_text())


@pytest.mark.slow
def test_doctor_and_run_agree_on_the_edgetpu_fallback(lookout_cmd, clean_env, models_dir, tmp_path: Path):
    cfg = tmp_path / "tpu.toml"
    cfg.write_text(
        f'models_dir = "{models_dir}"\n[runtime]\ntype = "edgetpu"\ndevice = "pci:0"\n'
        f'delegate_path = "{tmp_path / "libedgetpu.so.1"}"\n[mqtt]\nenabled = false\n'
    )
    env = {**clean_env, "LOOKOUT_HOST_ROOT": str(tmp_path / "root")}  # no TPU in this tree
    doctor, report = _doctor_and_run(lookout_cmd, env, cfg, tmp_path)
    assert report["runtime"] == "tflite" and report["fallback"]["from"] == "edgetpu"
    reason = report["fallback"]["reason"]
    assert "'pci:0'" in reason and str(tmp_path / "root") in reason
    assert doctor["ok"] is True and doctor["detail"].endswith(reason)


@pytest.mark.slow
def test_third_party_plugin_falls_back_through_the_hook(lookout_cmd, clean_env, models_dir, tmp_path: Path):
    site = tmp_path / "site"
    dist = site / "hailo_lookout-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hailo-lookout\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lookout.runtimes]\nhailo = hailo_lookout:HailoRuntime\n")
    (site / "hailo_lookout.py").write_text(HAILO_PLUGIN)
    path = os.pathsep.join(filter(None, [str(site), clean_env.get("PYTHONPATH")]))
    env = {**clean_env, "PYTHONPATH": path, "LOOKOUT_HOST_ROOT": str(tmp_path / "root")}
    cfg = tmp_path / "hailo.toml"
    cfg.write_text(
        f'models_dir = "{models_dir}"\n[runtime]\ntype = "hailo"\nthreads = 2\n[mqtt]\nenabled = false\n'
    )
    doctor, report = _doctor_and_run(lookout_cmd, env, cfg, tmp_path)
    want = f"no Hailo-8 at {tmp_path / 'root' / 'dev' / 'hailo0'}"
    assert report["fallback"] == {"from": "hailo", "to": "tflite", "reason": want}
    assert report["runtime"] == "tflite" and report["frames"] == 3
    assert doctor["detail"] == f"hailo cannot run here, will run tflite: {want}"


@pytest.mark.slow
@pytest.mark.parametrize(("board", "runs"), [("pi4", "pte"), ("pi5", "pte-int8")])
def test_int8_pte_needs_the_dot_product_a_pi_4_lacks(
    board: str, runs: str, pi_board, lookout_cmd, clean_env, models_dir, tmp_path: Path
) -> None:
    """ExecuTorch 1.0.1's XNNPACK dies with SIGILL running pte-int8 on a Cortex-A72 (docs/deploy.md): on a CPU
    whose /proc/cpuinfo lacks asimddp the plugin says so and runs the fp32 program; doctor agrees."""
    pytest.importorskip("executorch")
    cfg = tmp_path / f"{board}.toml"
    cfg.write_text(
        f'models_dir = "{models_dir}"\n[runtime]\ntype = "executorch"\nartifact = "pte-int8"\n'
        "[mqtt]\nenabled = false\n"
    )
    doctor, report = _doctor_and_run(lookout_cmd, pi_board(board).env(clean_env), cfg, tmp_path)
    program = Path(report["artifact"]).name
    assert (
        report["runtime"] == "executorch"
        and program.endswith(".pte")
        and ("_int8" in program) == (runs == "pte-int8")
    )
    if runs == "pte":
        reason = report["fallback"]["reason"]
        assert report["fallback"]["to"] == "executorch" and "asimddp" in reason and "SIGILL" in reason
        assert doctor["detail"].endswith(reason)
    else:
        assert report["fallback"] is None and not doctor
