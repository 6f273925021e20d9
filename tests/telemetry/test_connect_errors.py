"""Why a connection fails, said plainly (#15 item 14): TLS name mismatch, unknown CA, refused credentials,
for the device (its status line and log at the default level), the fleet and `lookout doctor`, whose
broker check now logs in with the configured credentials (a real MQTT CONNECT) instead of opening a socket.

A mosquitto made here: TLS with a server certificate for IP 127.0.0.1 only (so `localhost` is a name
mismatch), a second CA nobody signed the server with, and a password file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import TlsConfig
from app.telemetry.broker import Broker, mosquitto_path, start_broker

from .conftest import _give_to_mosquitto, _make_cert, make_ca, wait_until

PASSWORD = "right-pw-77"


@dataclass
class TlsBroker:
    broker: Broker
    ca: Path
    other_ca: Path

    def url(self, host: str = "127.0.0.1", user: str = "") -> str:
        return f"mqtts://{user}{host}:{self.broker.port}"


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    if not mosquitto_path() or not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.fail("mosquitto, mosquitto_passwd and openssl are required")
    d = Path(tempfile.mkdtemp(prefix="lookout-connect-"))
    os.chmod(d, 0o755)
    try:
        other = d / "other"
        other.mkdir()
        make_ca(d, "Lookout Test CA")
        make_ca(other, "Some Other CA")
        crt, key = _make_cert(d, "server", "/CN=127.0.0.1", "IP:127.0.0.1")
        pwfile = d / "passwd"
        pwfile.touch()
        subprocess.run(
            ["mosquitto_passwd", "-b", str(pwfile), "cam-1", PASSWORD], check=True, capture_output=True
        )
        for p in (key, pwfile):
            _give_to_mosquitto(p, 0o600)
        for p in (d / "ca.crt", crt, other / "ca.crt"):
            os.chmod(p, 0o644)
        extra = f"cafile {d / 'ca.crt'}\ncertfile {crt}\nkeyfile {key}\npassword_file {pwfile}"
        b = start_broker("mosquitto", extra_config=extra, allow_anonymous=False)
        try:
            yield TlsBroker(b, d / "ca.crt", other / "ca.crt")
        finally:
            b.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


CASES = {
    "name mismatch": ("localhost", "ca", PASSWORD, "does not match"),
    "unknown CA": ("127.0.0.1", "other_ca", PASSWORD, "unknown CA"),
    "wrong password": ("127.0.0.1", "ca", "wrong-pw-1", "refused the credentials"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_device_says_why_it_cannot_connect(
    tls_broker: TlsBroker, telemetry: Callable, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    import logging

    host, ca, password, words = CASES[case]
    with caplog.at_level(logging.WARNING):  # the default level of `lookout run`: no -v needed
        t = telemetry(tls_broker.url(host), "cam-1", username="cam-1", password=password,
                      tls=TlsConfig(ca_file=getattr(tls_broker, ca)))  # fmt: skip
        err = wait_until(lambda: t.stats()["last_error"], 20, "a connection error")
    assert words in err, err
    assert "cannot connect" not in err or words in err
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(words in m for m in warned), warned
    assert all(password not in m for m in warned)


def test_device_connects_with_the_right_settings(tls_broker: TlsBroker, telemetry: Callable) -> None:
    t = telemetry(tls_broker.url(), "cam-1", username="cam-1", password=PASSWORD,
                  tls=TlsConfig(ca_file=tls_broker.ca))  # fmt: skip
    assert t.wait_connected(20), t.stats()


def _doctor(lookout_cmd, env, tmp_path: Path, url: str, ca: Path, password: str) -> dict:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nurl = "{url}"\nusername = "cam-1"\npassword = "{password}"\n'
                   f'[mqtt.tls]\nca_file = "{ca}"\n')  # fmt: skip
    r = subprocess.run([*lookout_cmd, "doctor", "--no-probe", "--json", "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert password not in r.stdout + r.stderr
    return next(c for c in json.loads(r.stdout)["checks"] if c["area"] == "broker")


@pytest.mark.parametrize("case", list(CASES))
def test_doctor_broker_check_authenticates_and_says_why_not(
    tls_broker: TlsBroker, lookout_cmd, clean_env, tmp_path: Path, case: str
) -> None:
    host, ca, password, words = CASES[case]
    check = _doctor(lookout_cmd, clean_env, tmp_path, tls_broker.url(host), getattr(tls_broker, ca), password)
    assert check["ok"] is False and words in check["detail"], check


def test_doctor_broker_check_ok_with_the_right_credentials(
    tls_broker: TlsBroker, lookout_cmd, clean_env, tmp_path: Path
) -> None:
    check = _doctor(lookout_cmd, clean_env, tmp_path, tls_broker.url(), tls_broker.ca, PASSWORD)
    assert check["ok"] is True and "cam-1" in check["detail"] and "TLS" in check["detail"], check


@pytest.mark.parametrize("case", ["name mismatch", "unknown CA"])
def test_fleet_says_which_tls_check_failed(tls_broker: TlsBroker, lookout_cmd, clean_env, case: str) -> None:
    host, ca, _, words = CASES[case]
    r = subprocess.run([*lookout_cmd, "fleet", "--broker", tls_broker.url(host, f"cam-1:{PASSWORD}@"),
                        "--ca-file", str(getattr(tls_broker, ca)), "--once", "--wait", "2"],
                       capture_output=True, text=True, env=clean_env, timeout=120)  # fmt: skip
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert PASSWORD not in r.stderr and len(r.stderr.strip().splitlines()) == 1
