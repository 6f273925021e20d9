"""`lookout fleet` logs in with a password from --password-file or $LOOKOUT_MQTT_PASSWORD (real mosquitto
with a password file and no anonymous access); the password never shows in its output."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from app.telemetry import contract
from app.telemetry.broker import Broker, start_broker

pytestmark = pytest.mark.broker

PASSWORDS = {"monitor": "mon-Pw-7731", "cam-1": "cam-Pw-5510"}


@pytest.fixture
def locked_broker() -> Iterator[Broker]:
    d = Path(tempfile.mkdtemp(prefix="lookout-pw-"))  # outside pytest's 0700 tree: mosquitto must reach it
    d.chmod(0o755)
    pwfile = d / "passwd"
    pwfile.touch()
    for user, pw in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(pwfile), user, pw], check=True, capture_output=True)
    pwfile.chmod(0o600)
    if os.geteuid() == 0:  # mosquitto drops privileges to its user before reading the file
        pw = pwd.getpwnam("mosquitto")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    b = start_broker("mosquitto", extra_config=f"password_file {pwfile}", allow_anonymous=False)
    try:
        status = contract.Status(state="online", version="t", runtime="tflite", model="m", fallback=None,
                                 board=None, started_at=1.0, ts=2.0)  # fmt: skip
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.username_pw_set("cam-1", PASSWORDS["cam-1"])
        c.connect(b.host, b.port)
        c.loop_start()
        c.publish("lookout/cam-1/status", status.to_json(), qos=1, retain=True).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()
        yield b
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


def fleet(lookout_cmd: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*lookout_cmd, "fleet", "--once", "--wait", "2", "--idle-exit", "1", "--json", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_password_from_a_file_or_the_environment(
    locked_broker, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    url = f"mqtt://monitor@{locked_broker.host}:{locked_broker.port}"
    pw_file = tmp_path / "monitor.pw"
    pw_file.write_text(PASSWORDS["monitor"] + "\n")
    for extra, env in (
        (["--password-file", str(pw_file)], clean_env),
        ([], clean_env | {"LOOKOUT_MQTT_PASSWORD": PASSWORDS["monitor"]}),
    ):
        r = fleet(lookout_cmd, env, "--broker", url, *extra)
        assert r.returncode == 0, r.stderr
        assert [row["device_id"] for row in json.loads(r.stdout)] == ["cam-1"]
        assert PASSWORDS["monitor"] not in r.stdout + r.stderr


def test_wrong_or_unusable_credentials_are_one_line_errors_without_the_password(
    locked_broker, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    host = f"{locked_broker.host}:{locked_broker.port}"
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-Pw-9\n")
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    cases = [
        (
            ["--broker", f"mqtt://monitor@{host}", "--password-file", str(wrong)],
            "refused the credentials of user 'monitor' (Not authorized)",
        ),
        (["--broker", f"mqtt://monitor@{host}", "--password-file", str(empty)], "first line is empty"),
        (["--broker", f"mqtt://monitor@{host}", "--password-file", str(tmp_path / "none")], "cannot read it"),
        (["--broker", f"mqtt://{host}", "--password-file", str(wrong)], "needs a user"),
    ]
    for args, message in cases:
        r = fleet(lookout_cmd, clean_env, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        last = r.stderr.strip().splitlines()[-1]  # (log lines of the refused attempts come before it)
        assert last.startswith("lookout fleet: error: ") and message in last, r.stderr
        assert "not-the-Pw-9" not in r.stdout + r.stderr


def test_a_password_echoed_in_an_error_line_is_masked(
    locked_broker, lookout_cmd, clean_env, tmp_path
) -> None:
    """The password from --password-file or $LOOKOUT_MQTT_PASSWORD is remembered by app/redact.py: pasted
    by mistake where the user goes (mqtt://PASSWORD@host), the broker's refusal names the user as ***."""
    canary = "canary-Pw-4417"
    url = f"mqtt://{canary}@{locked_broker.host}:{locked_broker.port}"
    pw_file = tmp_path / "monitor.pw"
    pw_file.write_text(canary + "\n")
    for extra, env in (
        (["--password-file", str(pw_file)], clean_env),
        ([], clean_env | {"LOOKOUT_MQTT_PASSWORD": canary}),
    ):
        r = fleet(lookout_cmd, env, "--broker", url, *extra)
        assert r.returncode == 2, (extra, r.stdout, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert "refused the credentials of user '***'" in last, r.stderr
        assert canary not in r.stdout + r.stderr
