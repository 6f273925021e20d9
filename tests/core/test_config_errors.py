"""Config files that are not what they should be, and `config check` catching all `run` would (#15 item 11).

Each case runs the real CLI: a one-line error naming the file and what is wrong, exit 2, no traceback;
and `config check` rejects every config `run` rejects before it starts the pipeline (the rules live in
the config model, so both ask the same owner).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def _cli(lookout_cmd: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*lookout_cmd, *args], capture_output=True, text=True, env=env, timeout=120)


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (bytes(range(256)) * 3, ("not UTF-8 text",)),
        ('model = "blazeface-short"\n'.encode("utf-16"), ("UTF-16",)),
        ('model = "blazeface-short"\n'.encode("utf-16-be"), ("not UTF-8 text",)),
        (b"\x00\x00\x00model = 1", ("not UTF-8 text",)),
        (b'model = "a\x00b"\n', ("not UTF-8 text",)),
        (b'model = "\xff\xfe\x80"\n', ("not UTF-8 text", "0xff")),
        (b'model = "x\n', ("not valid TOML",)),
        (b"a = " + b"[" * 50000, ("nested too deeply",)),
    ],
)
def test_binary_or_utf16_config_is_a_one_line_error(
    lookout_cmd, clean_env, tmp_path: Path, content: bytes, words: tuple[str, ...]
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(content)
    for verb in (["config", "check"], ["config", "show"], ["run", "--no-mqtt"]):
        _one_line_error(_cli(lookout_cmd, clean_env, *verb, "--config", str(cfg)), str(cfg), *words)


def test_config_path_that_is_a_directory_says_so(lookout_cmd, clean_env, tmp_path: Path) -> None:
    line = _one_line_error(_cli(lookout_cmd, clean_env, "config", "check", "--config", str(tmp_path)))
    assert "is a directory" in line and "not found" not in line
    env = dict(clean_env, LOOKOUT_CONFIG=str(tmp_path))
    assert "is a directory" in _one_line_error(_cli(lookout_cmd, env, "config", "check"))


def test_unreadable_config_says_why(lookout_cmd, clean_env, tmp_path: Path) -> None:
    import os
    import shutil

    cmd = lookout_cmd
    if os.geteuid() == 0:  # root reads any file: run the CLI as root without the capabilities that allow it
        if shutil.which("setpriv") is None:
            pytest.skip("root reads files whatever their mode, and setpriv (util-linux) is missing")
        drop = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *lookout_cmd]
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "x"\n')
    cfg.chmod(0)
    _one_line_error(_cli(cmd, clean_env, "config", "check", "--config", str(cfg)), "ermission denied")


RUN_REJECTS = [
    ('[mqtt]\nurl = "mqtt://127.0.0.1:99999"\n', "mqtt.url"),
    ('[mqtt]\nurl = "mqtt://127.0.0.1:0"\n', "mqtt.url"),
    ('[mqtt]\nurl = "http://x"\n', "mqtt.url"),
    ('[mqtt]\nurl = "x"\n', "mqtt.url"),
    ('[mqtt]\nurl = "mqtt://127.0.0.1:port"\n', "mqtt.url"),
    ('[mqtt]\ntopic_prefix = "#"\n', "mqtt.topic_prefix"),
    ('[mqtt]\ntopic_prefix = "a/+/b"\n', "mqtt.topic_prefix"),
    ('[mqtt]\ntopic_prefix = "/lookout"\n', "mqtt.topic_prefix"),
    ('[mqtt]\ntopic_prefix = ""\n', "mqtt.topic_prefix"),
    ('[mqtt]\nurl = "mqtts://127.0.0.1:1"\n[mqtt.tls]\ncert_file = "/etc/hostname"\n', "mqtt.tls"),
    ('device_id = "a/b"\n', "device_id"),
]


@pytest.mark.parametrize(("text", "key"), RUN_REJECTS)
def test_config_check_catches_what_run_rejects(
    lookout_cmd, clean_env, tmp_path: Path, text: str, key: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n[source]\ntype = "synthetic"\n' + text)
    check = _one_line_error(_cli(lookout_cmd, clean_env, "config", "check", "--config", str(cfg)), key)
    run = _one_line_error(_cli(lookout_cmd, clean_env, "run", "--config", str(cfg), "--max-frames", "1"), key)
    assert check.split(" key ", 1)[1] == run.split(" key ", 1)[1]  # the same owner, the same words


SYNTHETIC = '[source]\ntype = "synthetic"\n'
# What the config names on this machine ({tmp}: the test's folder): `run` checked these only when it came
# to them (or at all: a missing CA file), `config check` said ok.
PREFLIGHT_REJECTS = [
    ('model = "nope"\n' + SYNTHETIC, "'model': missing manifest"),
    (SYNTHETIC + '[runtime]\nartifact = "nope"\n', "'runtime.artifact': model 'blazeface-short' has no artifact 'nope'"),
    (SYNTHETIC + '[runtime]\ntype = "edgetpu"\nfallback = "fail"\n', "'runtime.type': Edge TPU unavailable"),
    (SYNTHETIC + '[mqtt]\nurl = "mqtts://127.0.0.1:1"\n[mqtt.tls]\nca_file = "{tmp}/ca.pem"\n', "'mqtt.tls.ca_file': {tmp}/ca.pem not found"),
    (SYNTHETIC + '[mqtt]\nurl = "mqtts://127.0.0.1:1"\n[mqtt.tls]\nca_file = "{tmp}"\n', "'mqtt.tls.ca_file': {tmp} is a directory"),
    ('[source]\ntype = "images"\nfolder = "{tmp}/photos"\n', "'source.folder': source images: folder {tmp}/photos not found"),
    ('[source]\ntype = "images"\nfolder = "{tmp}"\n', "'source.folder': source images: folder {tmp} has no images"),
    ('[source]\nuri = "{tmp}/v.mp4"\n', "'source.uri': source opencv: video file {tmp}/v.mp4 not found"),
    ('[source]\nuri = "{tmp}/c.toml"\n', "'source.uri': source opencv: cannot decode video file {tmp}/c.toml"),
    ('state_dir = "{tmp}/c.toml"\n' + SYNTHETIC, "'state_dir': {tmp}/c.toml is not a directory (a file is in the way)"),
    ('state_dir = "{tmp}/c.toml/state"\n' + SYNTHETIC, "'state_dir': cannot create {tmp}/c.toml/state: {tmp}/c.toml is a file"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "words"), PREFLIGHT_REJECTS)
def test_config_check_catches_what_run_finds_on_this_machine(
    lookout_cmd, clean_env, tmp_path: Path, text: str, words: str
) -> None:
    """#15 item 11: one pre-flight owner (app/preflight.py) for `run` (before the model loads) and `check`."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text.replace("{tmp}", str(tmp_path)))
    want = f"key {words.replace('{tmp}', str(tmp_path))}"
    check = _one_line_error(_cli(lookout_cmd, clean_env, "config", "check", "--config", str(cfg)), want)
    run = _one_line_error(
        _cli(lookout_cmd, clean_env, "run", "--config", str(cfg), "--max-frames", "1"), want
    )
    assert check.split(" key ", 1)[1] == run.split(" key ", 1)[1]
    rules = _cli(lookout_cmd, clean_env, "config", "check", "--rules-only", "--config", str(cfg))
    assert rules.returncode == 0, rules.stderr  # the file's own rules: for a config meant for another machine
