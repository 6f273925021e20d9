"""`lookout sim`: a real small fleet on this machine, and a clean Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("lookout-"))


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.slow
def test_sim_three_devices(lookout_cmd, clean_env, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**clean_env, "TMPDIR": str(tmp)}
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [
            *lookout_cmd,
            "sim",
            "--devices",
            "3",
            "--duration",
            "20",
            "--bench-frames",
            "30",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "embedded mosquitto" in proc.stdout
    summary = json.loads(out.read_text())
    rows = {r["device_id"]: r for r in summary["devices"]}
    assert sorted(rows) == ["sim-01", "sim-02", "sim-03"]
    for r in rows.values():
        assert r["seen_by_monitor"] and r["exit_code"] == 0
        assert r["frames"] > 0
        assert r["published"] > 0 and r["received"] == r["published"] and r["lost"] == 0
        assert r["seq_gaps"] == 0
    assert rows["sim-01"]["runtime"] == "tflite"
    assert rows["sim-02"]["runtime"] == "executorch"
    assert rows["sim-03"]["fallback"]["from"] == "edgetpu"
    assert rows["sim-03"]["runtime"] == "tflite"
    # power is measured or null with the reason, never made up
    assert all(r["power_source"] for r in rows.values())
    bench = summary["bench"]["results"]
    assert [b["runtime"] for b in bench] == ["tflite", "executorch", "torchscript-lite"]
    assert leftovers(tmp) == []


@pytest.mark.slow
def test_sim_on_amqtt_fallback_broker(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """Without mosquitto the embedded broker is amqtt (MQTT 3.1.1): devices and monitor still lose nothing."""
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [*lookout_cmd, "sim", "--devices", "2", "--duration", "8", "--bench-frames", "0", "--broker-kind", "amqtt",
         "--json", str(out)],
        capture_output=True, text=True, env=clean_env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "embedded amqtt" in proc.stdout and "MQTT 3.1.1" in proc.stdout
    rows = json.loads(out.read_text())["devices"]
    assert len(rows) == 2
    assert all(r["frames"] > 0 and r["published"] > 0 and r["lost"] == 0 for r in rows)


@pytest.mark.slow
def test_ctrl_c_leaves_nothing_behind(lookout_cmd, clean_env, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**clean_env, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [*lookout_cmd, "sim", "--devices", "2", "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "device sim-02" not in seen:
        seen += proc.stdout.readline()
    assert "device sim-02" in seen, seen
    workdirs = [p for p in tmp.iterdir() if p.name.startswith("lookout-sim-")]
    assert len(workdirs) == 1
    time.sleep(3)
    assert processes_mentioning(str(workdirs[0])), "devices should be running"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=90)
    assert proc.returncode == 130
    assert processes_mentioning(str(workdirs[0])) == []
    assert processes_mentioning(str(tmp)) == []  # the broker's config lived there too
    assert leftovers(tmp) == []
