"""Remote commands against a real `lookout run` and a real mosquitto (#15 items 1 and 3).

1. A swap names a model by name only: the service is started from `/` with `--models-dir /tmp/.../x/models`
   and every variant from the issue that reached a manifest outside the models directory is refused
   with a one-line reply, the running model untouched.
3. A retained `cmd/swap` left on the broker before the service starts never runs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .live_device import DeviceWatcher, start_run, stop_run

REPO = Path(__file__).resolve().parents[2]


def _start(cfg: Path, cwd: Path, env: dict, *extra: str) -> subprocess.Popen:
    env = dict(env, PYTHONPATH=str(REPO))  # cwd is not the checkout
    return start_run(env, "--config", str(cfg), *extra, cwd=cwd)


def _stop(proc: subprocess.Popen) -> str:
    err = stop_run(proc)
    assert proc.returncode == 0, err[-2000:]
    return err


def _config(path: Path, device_id: str, broker, state: Path) -> Path:
    path.write_text(
        f'device_id = "{device_id}"\nstate_dir = "{state}"\n[runtime]\ntype = "tflite"\n'
        '[source]\ntype = "synthetic"\n[pipeline]\nfps = 5\n'
        f'[mqtt]\nurl = "{broker.url}"\nhomeassistant = false\n'
    )
    return path


@pytest.mark.slow
def test_swap_paths_from_root_are_refused(broker, models_dir, clean_env, tmp_path: Path) -> None:
    x = tmp_path / "x"
    for name in ("blazeface-short", "blazeface-back"):
        shutil.copytree(models_dir / name, x / "models" / name)
    shutil.copytree(models_dir / "blazeface-back", x / "evil")  # loadable, outside the models dir
    evil = x / "evil" / "model.toml"
    evil.write_text(evil.read_text().replace('name = "blazeface-back"', 'name = "evil"'))
    # inside the models dir, but naming /etc/passwd as its artifact (with the right sha256)
    shutil.copytree(models_dir / "blazeface-back", x / "models" / "passwd")
    m = x / "models" / "passwd" / "model.toml"
    from app.zoo import sha256_file

    text = m.read_text().replace('name = "blazeface-back"', 'name = "passwd"')
    text = text.replace('"face_detection_back.tflite"', '"../../../../../../../../../../etc/passwd"')
    sha = text.split('sha256 = "')[1].split('"')[0]
    m.write_text(text.replace(sha, sha256_file("/etc/passwd"), 1))

    cfg = _config(tmp_path / "c.toml", "d1", broker, tmp_path / "state")
    req = DeviceWatcher(broker, "d1")
    proc = _start(cfg, Path("/"), clean_env, "--models-dir", str(x / "models"))
    rel = str(x.relative_to("/"))
    variants = [
        f"{rel}/evil/model.toml",  # relative to the service's working directory, /
        f"{rel}/evil",
        str(evil),
        str(x / "evil"),
        "../evil",
        "./evil",
        "evil",  # not a model of the models directory
        "passwd",  # its artifact path leaves the model folder
        "blazeface-back/../../evil",
    ]
    try:
        req.wait(lambda: any(s.get("state") == "online" for s in req.status), proc)
        for i, model in enumerate(variants):
            req.command("swap", {"model": model, "runtime": "tflite", "id": f"v{i}"})
            reply = req.reply_to(f"v{i}", proc)
            assert reply["ok"] is False, (model, reply)
            assert "\n" not in reply["error"] and reply["error"], (model, reply)
        # the service still runs the configured model, and a proper name still swaps
        req.command("swap", {"model": "blazeface-back", "runtime": "tflite", "id": "good"})
        good = req.reply_to("good", proc)
        assert good["ok"] is True and good["to"]["model"] == "blazeface-back", good
    finally:
        err = _stop(proc)
        req.close()
    assert "Traceback" not in err
    with req.lock:
        models = [s.get("model") for s in req.status if s.get("model")]
    assert "evil" not in models and "passwd" not in models


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_retained_swap_never_runs(broker, models_dir, clean_env, tmp_path: Path, protocol: str) -> None:
    cfg = _config(tmp_path / "c.toml", "d2", broker, tmp_path / "state")
    cfg.write_text(cfg.read_text() + f'protocol = "{protocol}"\n')
    req = DeviceWatcher(broker, "d2")
    req.command("swap", {"model": "blazeface-back", "runtime": "tflite", "id": "stale"}, retain=True)
    proc = _start(cfg, REPO, clean_env)
    try:
        req.wait(lambda: any(s.get("state") == "online" for s in req.status), proc)
        # commands run in arrival order; a retained one arrives at subscription, before this one
        req.command("config", {"publish_empty": True, "id": "live"})
        assert req.reply_to("live", proc)["ok"] is True
        time.sleep(0.5)
    finally:
        err = _stop(proc)
        req.close()
    with req.lock:
        stale = [r for r in req.replies if r.get("id") == "stale"]
        models = {s.get("model") for s in req.status if s.get("model")}
    assert models == {"blazeface-short"}, models
    assert all(r["ok"] is False for r in stale), stale
    if protocol == "3.1.1":  # MQTT 5 subscribes with Retain Handling 2: the broker never sends it
        assert "retained command" in err and stale and "retained" in stale[0]["error"]
