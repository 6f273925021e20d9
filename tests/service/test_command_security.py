"""Remote commands against a real `lookout run` and a real mosquitto (#15 items 1 and 3).

1. A swap names a model by name only: the service is started from `/` with `--models-dir /tmp/.../x/models`
   and every variant from the issue that reached a manifest outside the models directory is refused
   with a one-line reply, the running model untouched.
3. A retained `cmd/swap` left on the broker before the service starts never runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from .live_device import start_run, stop_run

REPO = Path(__file__).resolve().parents[2]


class Requester:
    """An MQTT 5 client that sends commands and records replies and statuses of one device."""

    def __init__(self, broker, device_id: str) -> None:
        self.device_id = device_id
        self.replies: list[dict] = []
        self.status: list[dict] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(f"lookout/{device_id}/cmd/+/reply", qos=1)
        self.c.subscribe(f"lookout/{device_id}/status", qos=1)
        self.c.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        if not msg.payload:
            return
        with self.lock:
            (self.replies if msg.topic.endswith("/reply") else self.status).append(json.loads(msg.payload))

    def send(self, verb: str, payload: dict, retain: bool = False) -> None:
        info = self.c.publish(
            f"lookout/{self.device_id}/cmd/{verb}", json.dumps(payload), qos=1, retain=retain
        )
        info.wait_for_publish(10)

    def wait(self, what, proc: subprocess.Popen, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = what()
            if got:
                return got
            assert proc.poll() is None, "service exited: " + proc.stderr.read()[-2000:]
            time.sleep(0.05)
        raise AssertionError("timed out waiting")

    def reply_to(self, req_id: str, proc: subprocess.Popen) -> dict:
        return self.wait(lambda: next((r for r in self.replies if r.get("id") == req_id), None), proc)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


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
    req = Requester(broker, "d1")
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
            req.send("swap", {"model": model, "runtime": "tflite", "id": f"v{i}"})
            reply = req.reply_to(f"v{i}", proc)
            assert reply["ok"] is False, (model, reply)
            assert "\n" not in reply["error"] and reply["error"], (model, reply)
        # the service still runs the configured model, and a proper name still swaps
        req.send("swap", {"model": "blazeface-back", "runtime": "tflite", "id": "good"})
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
    req = Requester(broker, "d2")
    req.send("swap", {"model": "blazeface-back", "runtime": "tflite", "id": "stale"}, retain=True)
    proc = _start(cfg, REPO, clean_env)
    try:
        req.wait(lambda: any(s.get("state") == "online" for s in req.status), proc)
        # commands run in arrival order; a retained one arrives at subscription, before this one
        req.send("config", {"publish_empty": True, "id": "live"})
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
