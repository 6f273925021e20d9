"""Non-finite numbers (NaN, ±Infinity, 1e999) are refused wherever a number comes in: config commands on a
running service, the config file, and the command line (issue #15, item 7).

Before: `{"score_threshold": NaN}` was applied (no detection passes a NaN threshold) and its reply was lost
(the reply could not be serialised); `{"metrics_interval_s": NaN}` stopped metrics and STATUS= for good."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .live_device import LiveDevice

NONFINITE = (b"NaN", b"Infinity", b"-Infinity", b"1e999")


@pytest.mark.slow
@pytest.mark.broker
def test_config_command_refuses_nonfinite_and_keeps_running(broker, clean_env, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "nan-dev"\nstate_dir = "{tmp_path / "state"}"\n'
        '[source]\ntype = "synthetic"\n[pipeline]\nfps = 10.0\n'
        f'[mqtt]\nurl = "{broker.url}"\npublish_empty = true\nmetrics_interval_s = 1.0\nhomeassistant = false\n'
    )
    dev = LiveDevice(broker.host, broker.port, "nan-dev", cfg, clean_env)
    try:
        dev.wait(lambda: len(dev.on("/metrics")) >= 1, 90, "first metrics")
        n = 0
        for key in (b"score_threshold", b"metrics_interval_s"):
            for bad in NONFINITE:
                n += 1
                dev.command("config", b'{"id": "%d", "%s": %s}' % (n, key, bad))
                reply = dev.wait(lambda n=n: [r for r in dev.on("/cmd/config/reply") if r.get("id") == str(n)],
                                 30, f"the reply to {key!r}: {bad!r}")[0]  # fmt: skip
                assert reply["ok"] is False, reply
                assert key.decode() in reply["error"], reply
                if bad == b"NaN":  # (the schema's maximum already refuses +inf for score_threshold)
                    assert "finite" in reply["error"], reply
        # nothing was applied: detections and metrics keep flowing at the configured interval
        t0 = time.time()
        dev.wait(lambda: len(dev.on("/metrics", since=t0)) >= 2, 30, "metrics after the refused commands")
        dev.wait(lambda: len(dev.on("/detections", since=t0)) >= 5, 30, "detections after them")
        # a valid command still applies, at once
        dev.command("config", b'{"id": "ok", "metrics_interval_s": 0.5, "score_threshold": 0.6}')
        reply = dev.wait(lambda: [r for r in dev.on("/cmd/config/reply") if r.get("id") == "ok"], 30, "ok")[0]
        assert reply["ok"] is True and reply["applied"] == {"metrics_interval_s": 0.5, "score_threshold": 0.6}
        t1 = time.time()
        dev.wait(lambda: len(dev.on("/metrics", since=t1)) >= 4, 30, "metrics at the new interval")
    finally:
        code = dev.stop()
    assert code == 0, dev.stderr[-3000:]
    assert "Traceback" not in dev.stderr


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[pipeline]\nscore_threshold = nan\n", "pipeline.score_threshold"),
        ("[pipeline]\nfps = inf\n", "pipeline.fps"),
        ("[mqtt]\nmetrics_interval_s = inf\n", "mqtt.metrics_interval_s"),
        ("[reconnect]\nmax_s = inf\n", "reconnect.max_s"),
        ("[spool]\nmax_age_s = inf\n", "spool.max_age_s"),
        ('[meter]\ntype = "ina2xx_i2c"\nshunt_ohms = nan\n', "meter.shunt_ohms"),
        ('[runtime]\ntype = "edgetpu"\nprobe_timeout_s = nan\n', "runtime.probe_timeout_s"),
    ],
)
def test_config_file_refuses_nonfinite(toml: str, key: str, lookout_cmd, clean_env, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    r = subprocess.run([*lookout_cmd, "config", "check", "--config", str(cfg)],
                       capture_output=True, text=True, env=clean_env, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "finite" in lines[0], r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--no-mqtt", "--source", "synthetic", "--fps", "nan"],
        ["run", "--no-mqtt", "--source", "synthetic", "--fps", "inf"],
        ["fleet", "--once", "--wait", "nan"],
        ["fleet", "--once", "--p90-alert-ms", "inf"],
        ["sim", "--duration", "nan"],
        ["bench", "--duration", "inf"],
    ],
)
def test_command_line_refuses_nonfinite(argv: list[str], lookout_cmd, clean_env) -> None:
    r = subprocess.run([*lookout_cmd, *argv], capture_output=True, text=True, env=clean_env, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "finite" in r.stderr and "Traceback" not in r.stderr, r.stderr
