"""cmd/bench on a running device measures with that device's config: its meter, models dir and runtime
options (before, the bench workers searched for a config file and measured with none: "no power meter
configured" on a device whose meter is configured)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ..service.live_device import start_run, stop_run


@pytest.mark.slow
def test_bench_command_uses_the_running_config(
    broker, collect, models_dir, clean_env, tmp_path: Path
) -> None:
    models = tmp_path / "models"  # a models dir of its own: the default one would be found by a search
    shutil.copytree(models_dir / "blazeface-short", models / "blazeface-short")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "bench-dev"\nmodels_dir = "{models}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[source]\ntype = "synthetic"\n[pipeline]\nfps = 5\n'
        f'[meter]\ntype = "rapl"\nroot = "{tmp_path / "no-powercap"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nhomeassistant = false\n'
    )
    sub = collect(broker, ["lookout/bench-dev/#"])
    proc = start_run(clean_env, "--config", str(cfg))
    try:
        sub.wait_for("/status", timeout_s=60)
        sub.publish("lookout/bench-dev/cmd/bench", json.dumps({"runtimes": ["tflite"], "frames": 5}))
        reply = sub.wait_for("/cmd/bench/reply", timeout_s=180)[0].json()
        bench = next(
            m.json() for m in sub.wait_for("/bench", timeout_s=30) if m.topic.endswith("bench-dev/bench")
        )
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-2000:]
    assert reply["ok"] is True, reply
    result = bench["results"][0]
    assert result.get("error") is None, result
    assert result["power"]["source"].startswith("rapl"), result["power"]
    assert not list((tmp_path / "state").glob("*.toml")), "the bench's config file is removed"
