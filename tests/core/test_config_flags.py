"""Flags merged into a config file, and tables that leave out `type` (the real CLI in a subprocess).

A scalar where a table belongs (`pipeline = 3`) is a one-line error naming the key, also when a flag
goes into that table; a `[runtime]` or `[source]` table without `type` is of the default type, exactly
as when the table is absent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


def _cli(lookout_cmd: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*lookout_cmd, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    ("text", "flags", "key"),
    [
        ('runtime = "edgetpu"\n', ["--runtime", "tflite"], "'runtime' must be a table, not str"),
        ('runtime = ["edgetpu"]\n', ["--threads", "2"], "'runtime' must be a table, not list"),
        ("pipeline = 3\n", ["--fps", "5"], "'pipeline' must be a table, not int"),
        ("pipeline = 3\n", ["--max-frames", "5"], "'pipeline' must be a table, not int"),
        ('mqtt = "x"\n', ["--broker", "mqtt://127.0.0.1:1"], "'mqtt' must be a table, not str"),
    ],
)
def test_a_scalar_where_a_flag_goes_into_a_table_is_one_line(
    lookout_cmd, clean_env, tmp_path: Path, text: str, flags: list[str], key: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = _cli(lookout_cmd, clean_env, "run", "--config", str(cfg), "--no-mqtt", *flags)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{cfg}: key {key}" in r.stderr, r.stderr


def test_threads_without_a_config_file_runs_the_default_runtime(lookout_cmd, clean_env) -> None:
    r = _cli(lookout_cmd, clean_env, "run", "--threads", "2", "--source", "synthetic", "--max-frames", "1",
             "--no-mqtt")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["runtime"] == "tflite"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[runtime]\nthreads = 2\n", '[runtime]\ntype = "tflite"\nthreads = 2\nisolate = false\nxnnpack = true\n'),
        ("[source]\nrealtime = true\n", '[source]\ntype = "opencv"\nuri = "demo"\nloop = true\nrealtime = true\n'),
        ("[meter]\n", '[meter]\ntype = "none"\n'),
    ],
)  # fmt: skip
def test_a_table_without_type_is_of_the_default_type(
    lookout_cmd, clean_env, tmp_path: Path, text: str, want: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert _cli(lookout_cmd, clean_env, "config", "check", "--config", str(cfg)).returncode == 0
    show = _cli(lookout_cmd, clean_env, "config", "show", "--config", str(cfg))
    assert show.returncode == 0, show.stderr
    assert want in show.stdout
