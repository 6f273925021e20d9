"""The CLI surface: verbs listed, version, exit codes."""

from __future__ import annotations

import subprocess

from app import __version__


def run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_help_lists_every_verb(lookout_cmd: list[str], clean_env: dict) -> None:
    proc = run([*lookout_cmd, "--help"], clean_env)
    assert proc.returncode == 0
    for verb in ("run", "bench", "models", "fleet", "sim", "doctor", "config"):
        assert f"    {verb}" in proc.stdout, verb


def test_version(lookout_cmd: list[str], clean_env: dict) -> None:
    proc = run([*lookout_cmd, "--version"], clean_env)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lookout {__version__}"


def test_config_example_is_printed_and_checks(lookout_cmd: list[str], clean_env: dict, tmp_path) -> None:
    proc = run([*lookout_cmd, "config", "example"], clean_env)
    assert proc.returncode == 0
    path = tmp_path / "c.toml"
    path.write_text(proc.stdout)
    check = run([*lookout_cmd, "config", "check", "--config", str(path)], clean_env)
    assert check.returncode == 0, check.stderr
    show = run([*lookout_cmd, "config", "show", "--config", str(path)], clean_env)
    assert show.returncode == 0
    assert 'type = "tflite"' in show.stdout


def test_missing_config_file_exits_2(lookout_cmd: list[str], clean_env: dict, tmp_path) -> None:
    proc = run([*lookout_cmd, "config", "show", "--config", str(tmp_path / "nope.toml")], clean_env)
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr
    assert "Traceback" not in proc.stderr
