"""Secrets never appear in output, errors, reports or logs (#15 item 5).

A canary password is put everywhere a user can put one (config `password`, the broker URL's user info,
--broker, a PostgreSQL history URL, a TOML value of the wrong type), then every byte the CLI writes
(stdout, stderr at -vv, report files) is searched for it.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

CANARY = "Canary-pw/9x#Q"  # '/', '#' as users type them (unencoded) in URLs too
CANARY_URL = "CanaryUrlPw42"


def _cli(lookout_cmd: list[str], env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*lookout_cmd, "-vv", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _clean(r: subprocess.CompletedProcess, *canaries: str) -> str:
    out = r.stdout + r.stderr
    for c in canaries or (CANARY, CANARY_URL):
        assert c not in out, f"secret {c!r} in the output of {r.args[2:]}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    return out


@pytest.fixture
def secret_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "secret.toml"
    cfg.write_text(
        f'device_id = "sec-1"\nstate_dir = "{tmp_path / "state"}"\n[source]\ntype = "synthetic"\n'
        f'[mqtt]\nurl = "mqtt://cam:{CANARY_URL}@127.0.0.1:1"\nusername = "cam"\npassword = "{CANARY}"\n'
        "reconnect_max_s = 0.5\n"
    )
    return cfg


def test_config_show_check_and_doctor_hide_passwords(lookout_cmd, clean_env, secret_config: Path) -> None:
    shown = _cli(lookout_cmd, clean_env, "config", "show", "--config", str(secret_config))
    assert shown.returncode == 0, shown.stderr
    out = _clean(shown)
    assert "password" in out and "cam:***@127.0.0.1" in out  # the keys are there, the values are not
    _clean(_cli(lookout_cmd, clean_env, "config", "check", "--config", str(secret_config)))
    _clean(_cli(lookout_cmd, clean_env, "doctor", "--no-probe", "--json", "--config", str(secret_config)))
    _clean(_cli(lookout_cmd, clean_env, "doctor", "--no-probe", "--config", str(secret_config)))


def test_run_against_an_unreachable_broker_logs_and_reports_no_password(
    lookout_cmd, clean_env, secret_config: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    r = _cli(lookout_cmd, clean_env, "run", "--config", str(secret_config), "--max-frames", "30",
             "--fps", "10", "--report", str(report))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    _clean(r)
    text = report.read_text()
    assert CANARY not in text and CANARY_URL not in text
    assert json.loads(text)["mqtt"]["connected"] is False


@pytest.mark.parametrize(
    "url",
    [
        f"mqtt://u:{CANARY}@127.0.0.1:1",
        f"mqtt://u:{CANARY}@127.0.0.1:99999",
        f"mqtt://u:{CANARY}@127.0.0.1:port",
        f"http://u:{CANARY}@127.0.0.1:1",
        f"mqtt://u:{CANARY}@[::1",
    ],
)
def test_broker_flags_with_a_password_never_echo_it(lookout_cmd, clean_env, tmp_path: Path, url: str) -> None:
    run = _cli(lookout_cmd, clean_env, "run", "--broker", url, "--source", "synthetic", "--max-frames", "3",
               "--state-dir", str(tmp_path / "s"))  # fmt: skip
    _clean(run, CANARY)
    fleet = _cli(lookout_cmd, clean_env, "fleet", "--broker", url, "--once", "--wait", "1")
    assert fleet.returncode == 2
    _clean(fleet, CANARY)
    assert "error" in fleet.stderr


def test_sim_with_an_external_broker_never_echoes_its_password(lookout_cmd, clean_env) -> None:
    url = f"mqtt://u:{CANARY}@127.0.0.1:1"  # refused: sim names its broker, then stops with an error
    sim = _cli(lookout_cmd, clean_env, "sim", "--devices", "1", "--duration", "1", "--bench-frames", "0",
               "--broker", url)  # fmt: skip
    assert sim.returncode == 2 and "broker: mqtt://u:***@127.0.0.1:1" in sim.stdout, sim.stdout + sim.stderr
    _clean(sim, CANARY)


def test_fleet_report_with_a_postgresql_url_never_echoes_its_password(
    lookout_cmd, clean_env, tmp_path
) -> None:
    r = _cli(lookout_cmd, clean_env, "fleet", "report", "--db", f"postgresql://u:{CANARY}@127.0.0.1:1/x",
             "--out", str(tmp_path / "rep"))  # fmt: skip
    assert r.returncode == 2
    _clean(r, CANARY)


@pytest.mark.parametrize(
    "line",
    [
        "password = 123456789",
        "password = [123456789]",
        "password = { x = 123456789 }",
        "username = 123456789",
    ],
)
def test_a_wrong_type_for_a_secret_does_not_echo_its_value(lookout_cmd, clean_env, tmp_path, line) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[mqtt]\n{line}\n")
    r = _cli(lookout_cmd, clean_env, "config", "check", "--config", str(cfg))
    assert r.returncode == 2 and "mqtt." in r.stderr
    if "password" in line:
        _clean(r, "123456789")


def test_a_bad_url_in_the_config_does_not_echo_its_password(lookout_cmd, clean_env, tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nurl = "http://u:{CANARY}@host"\n')
    r = _cli(lookout_cmd, clean_env, "config", "check", "--config", str(cfg))
    assert r.returncode == 2 and "mqtt.url" in r.stderr
    _clean(r, CANARY)


def test_log_lines_and_error_lines_pass_through_one_redaction(caplog: pytest.LogCaptureFixture) -> None:
    """A secret the config holds is scrubbed from any log line, whoever formats it."""
    from app.config import validate_config
    from app.redact import LogFormatter, redact

    validate_config({"mqtt": {"username": "u", "password": CANARY}})
    assert redact(f"refused: user u password {CANARY}") == "refused: user u password ***"
    assert redact(f"see postgresql://u:{CANARY}@db/x") == "see postgresql://u:***@db/x"
    assert redact(f"mqtt://u:{CANARY}@h:1 and mqtts://v:w@h") == "mqtt://u:***@h:1 and mqtts://v:***@h"
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "connect with %s failed", (CANARY,), None)
    assert CANARY not in LogFormatter("%(message)s").format(rec)
