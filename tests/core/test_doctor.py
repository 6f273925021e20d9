"""`lookout doctor`: runtimes (including broken plugins), Edge TPUs, pipeline readiness and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def doctor(lookout_cmd: list[str], env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*lookout_cmd, "doctor", "--json", *extra], capture_output=True, text=True, env=env, timeout=120
    )


def test_default_pipeline_can_run_and_tpu_absence_is_explained(lookout_cmd, clean_env) -> None:
    proc = doctor(lookout_cmd, clean_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["can_run"] is True
    by_name = {(c["area"], c["name"]): c for c in out["checks"]}
    assert by_name[("runtime", "tflite")]["ok"] is True
    assert by_name[("edgetpu", "devices")]["ok"] is False
    assert "1a6e:089a" in by_name[("edgetpu", "devices")]["detail"]
    assert "libedgetpu" in by_name[("edgetpu", "delegate")]["detail"]


def test_missing_model_exits_1_with_reason(lookout_cmd, clean_env, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "no-such-model"\n[mqtt]\nenabled = false\n')
    proc = doctor(lookout_cmd, clean_env, "--config", str(cfg), "--no-probe")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    bad = [c for c in out["checks"] if c["area"] == "pipeline" and not c["ok"]]
    assert bad and "no-such-model" in bad[0]["detail"]


def test_broken_runtime_plugin_is_listed_with_its_error(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """A third-party runtime registered through the entry-point group whose import fails never vanishes."""
    dist = tmp_path / "site" / "hailo_lookout-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hailo-lookout\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lookout.runtimes]\nhailo = hailo_lookout_missing:HailoRuntime\n")
    env = {
        **clean_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), clean_env.get("PYTHONPATH")])),
    }
    proc = doctor(lookout_cmd, env, "--no-probe")
    out = json.loads(proc.stdout)
    hailo = next(c for c in out["checks"] if c["name"] == "hailo")
    assert hailo["ok"] is False
    assert "hailo_lookout_missing" in hailo["detail"]
    assert "ModuleNotFoundError" in hailo["detail"]


def test_broker_check_uses_the_shared_parser_and_hides_the_password(broker) -> None:
    from app.commands.doctor import check_broker

    ok = check_broker(f"mqtt://cam-1:s3cret@{broker.host}:{broker.port}")
    assert ok.ok is True and ok.name == f"mqtt://cam-1:***@{broker.host}:{broker.port}"
    broker.stop()
    down = check_broker(f"mqtt://cam-1:s3cret@{broker.host}:{broker.port}")
    assert down.ok is False and "cannot connect" in down.detail
    bad = check_broker("tcp://cam-1:s3cret@host")
    assert bad.ok is False and "expected mqtt://host" in bad.detail
    assert all("s3cret" not in c.name + c.detail for c in (ok, down, bad))
