"""The CLI surface: verbs listed, version, exit codes."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

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


# (verb, action argv, shared option, value, namespace attribute, converted value)
SHARED_OPTIONS = [
    ("models", ["verify"], "--models-dir", "/srv/models", "models_dir", Path("/srv/models")),
    ("config", ["check"], "--config", "/etc/lookout/x.toml", "config", "/etc/lookout/x.toml"),
    ("fleet", ["report", "--out", "o"], "--db", "/var/f.sqlite", "db", "/var/f.sqlite"),
    ("fleet", ["serve"], "--broker", "mqtt://b:1884", "broker", "mqtt://b:1884"),
    ("fleet", ["serve"], "--log-interval", "5", "log_interval", 5.0),
]


def _verbs_with_actions() -> set[str]:
    from app.cli import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name
        for name, p in verbs.choices.items()
        if any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    }


def test_every_verb_with_actions_is_covered() -> None:
    assert _verbs_with_actions() == {case[0] for case in SHARED_OPTIONS}


@pytest.mark.parametrize(("verb", "action", "flag", "value", "attr", "want"), SHARED_OPTIONS)
def test_shared_options_work_before_and_after_the_action(
    verb: str, action: list[str], flag: str, value: str, attr: str, want: object
) -> None:
    from app.cli import build_parser

    parse = build_parser().parse_args
    after = parse([verb, *action, flag, value])
    before = parse([verb, flag, value, *action])
    assert getattr(after, attr) == getattr(before, attr) == want
    assert getattr(parse([verb, *action]), attr) != want  # not given: the verb's default is there
    assert getattr(parse([verb, flag, "7", *action, flag, value]), attr) == want  # after wins


def test_models_verify_honours_models_dir_after_the_action(
    lookout_cmd: list[str], clean_env: dict, tmp_path: Path, models_dir: Path
) -> None:
    for argv in (["verify", "--models-dir", str(tmp_path)], ["--models-dir", str(tmp_path), "verify"]):
        proc = run([*lookout_cmd, "models", *argv], clean_env)
        assert proc.returncode == 2 and f"no models found in {tmp_path}" in proc.stderr, proc.stderr
    ok = run(
        [*lookout_cmd, "models", "verify", "blazeface-short", "--models-dir", str(models_dir)], clean_env
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("argv", [["models", "list", "--json"], ["config", "example"]])
def test_a_reader_that_closes_early_ends_quietly(
    lookout_cmd: list[str], clean_env: dict, argv: list[str]
) -> None:
    """`lookout models list --json | head -1`: the reader is gone before the output is written; no
    BrokenPipeError traceback, the exit status a shell gives a tool ended by SIGPIPE."""
    import os
    import sys

    from app.cli import EXIT_SIGPIPE

    read_end, write_end = os.pipe()
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.close()"], stdin=read_end)
    os.close(read_end)
    assert reader.wait(timeout=60) == 0  # closed: nothing reads the pipe any more
    writer = subprocess.run(
        [*lookout_cmd, *argv], stdout=write_end, stderr=subprocess.PIPE, text=True, env=clean_env, timeout=60
    )
    os.close(write_end)
    assert writer.stderr == ""
    assert writer.returncode == EXIT_SIGPIPE
