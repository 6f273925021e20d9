"""`lookout fleet` end to end: real mosquitto, real fleet_load.py subprocess, the CLI as a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

FIELDS = ("device_id", "online", "runtime", "model", "fps", "infer_p90_ms", "power_w", "temp_c", "last_seen")


def wait_for_file(path: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"fleet_load exited early: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"fleet_load did not get ready within {timeout_s:.0f} s")
        time.sleep(0.1)


def fleet_once(lookout_cmd: list[str], env: dict, broker_url: str, wait: float, *extra: str) -> list[dict]:
    r = subprocess.run(
        [*lookout_cmd, "fleet", "--broker", broker_url, "--once", "--wait", str(wait), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fifty_devices_online_then_offline_by_will_then_report(
    broker, fleet_load, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    ready = tmp_path / "ready.json"
    load = fleet_load(
        "--devices", "50", "--broker", broker.url, "--duration", "120", "--detections-rate", "2",
        "--ready", str(ready),
    )  # fmt: skip
    wait_for_file(ready, load)
    db = tmp_path / "fleet.sqlite"
    rows = fleet_once(lookout_cmd, clean_env, broker.url, 5, "--db", str(db), "--history-interval", "1")

    assert len(rows) == 50
    assert {r["device_id"] for r in rows} == set(json.loads(ready.read_text())["devices"])
    for r in rows:
        assert set(FIELDS) <= r.keys()
        assert r["online"] is True and r["state"] == "online"
        assert r["runtime"] in ("tflite", "executorch", "edgetpu", "torchscript-lite")
        assert r["model"] and r["last_seen"] > 0
        assert r["fps"] > 0 and r["infer_p90_ms"] > 0
        # fleet_load never fabricates hardware readings: null, with the reason
        assert r["power_w"] is None and r["power_source"].startswith("none:")
        assert r["temp_c"] is None and "no sensors" in r["reasons"]["temp_c"]
        assert r["messages"]["detections"] > 0 and r["seq_gaps"] == 0
        assert r["malformed"] == 0
        assert r["bench_runtimes"] == ["tflite", "executorch"]

    load.send_signal(signal.SIGKILL)
    load.wait(timeout=10)
    rows = fleet_once(lookout_cmd, clean_env, broker.url, 1.5)
    assert len(rows) == 50
    assert all(r["online"] is False and r["state"] == "offline" for r in rows), rows[:2]
    assert all("offline" in r["alerts"] for r in rows)

    out = tmp_path / "report"
    r = subprocess.run(
        [
            *lookout_cmd,
            "fleet",
            "report",
            "--since",
            "1h",
            "--out",
            str(out),
            "--db",
            str(db),
            "--max-charts",
            "3",
        ],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    index = (out / "index.html").read_text()
    pngs = sorted(out.glob("device-*.png"))
    assert len(pngs) == 3
    blobs = [p.read_bytes() for p in pngs]
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) > 5000 for b in blobs)
    assert len(set(blobs)) == 3  # each device's charts are its own
    for p in pngs:
        assert f"src='{p.name}'" in index
    assert (out / "runtimes.png").read_bytes().startswith(b"\x89PNG")
    assert index.count("<tr>") >= 50 + 2  # fleet table rows plus the runtime summary
    assert "executorch" in index and "tflite" in index


def test_unreachable_broker_is_a_one_line_error(lookout_cmd, clean_env) -> None:
    r = subprocess.run(
        [*lookout_cmd, "fleet", "--broker", "mqtt://127.0.0.1:1", "--once", "--wait", "0", "--json"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip().startswith("lookout fleet: error: cannot connect to broker mqtt://127.0.0.1:1")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("flag", [["--retention", "soon"], ["--broker", "http://x"]])
def test_bad_flags_are_one_line_errors(lookout_cmd, clean_env, flag) -> None:
    r = subprocess.run(
        [*lookout_cmd, "fleet", *flag, "--once", "--wait", "0"], capture_output=True, text=True, env=clean_env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_headless_monitor_logs_and_stores_history_until_sigterm(
    broker, fleet_load, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    """The headless monitor (no terminal, e.g. under systemd): summary lines on stdout, history in SQLite."""
    ready = tmp_path / "ready.json"
    load = fleet_load("--devices", "3", "--broker", broker.url, "--duration", "60", "--ready", str(ready))
    wait_for_file(ready, load)
    db = tmp_path / "history.sqlite"
    mon = subprocess.Popen(
        [*lookout_cmd, "fleet", "--broker", broker.url, "--db", str(db), "--history-interval", "0.5",
         "--log-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env,
    )  # fmt: skip
    try:
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "3/3 online" not in line:
            line = mon.stdout.readline()
            assert line, mon.stderr.read()
    finally:
        mon.send_signal(signal.SIGTERM)
        _, err = mon.communicate(timeout=30)
    assert "3/3 online" in line
    assert mon.returncode == 0, err
    from app.fleet.store import Store

    store = Store(db)
    try:
        assert store.count("samples") >= 3
    finally:
        store.close()
