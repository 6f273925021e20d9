"""Config loading: search order, discriminated unions, one-line errors naming the key."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from app.commands.config import example_text
from app.config import find_config_file, load_config, to_toml
from app.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lookout.toml"
    p.write_text(text)
    return p


def test_defaults_validate_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOKOUT_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.runtime.type == "tflite"
    assert cfg.source.type == "opencv"
    assert cfg.meter.type == "none"


def test_search_order_explicit_then_env_then_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "lookout.toml").write_text('model = "from-cwd"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text('model = "from-env"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('model = "from-flag"\n')
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LOOKOUT_CONFIG", raising=False)
    assert load_config().model == "from-cwd"
    monkeypatch.setenv("LOOKOUT_CONFIG", str(env_file))
    assert load_config().model == "from-env"
    assert load_config(explicit).model == "from-flag"
    assert find_config_file(explicit) == explicit


def test_runtime_union_selects_variant_fields(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[runtime]\ntype = "edgetpu"\ndevice = "usb:0"\nfallback = "fail"\n'))
    assert cfg.runtime.type == "edgetpu"
    assert cfg.runtime.device == "usb:0"
    assert cfg.runtime.fallback == "fail"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 1\n", "colour"),
        ('[runtime]\ntype = "tflite"\nthreadz = 2\n', "runtime.threadz"),
        ('[runtime]\ntype = "tflite"\nthreads = 0\n', "runtime.threads"),
        ('[runtime]\ntype = "tflite"\nthreads = "many"\n', "runtime.threads"),
        ('[runtime]\ntype = "tensorrt"\n', "runtime.type"),
        ('[source]\ntype = "opencv"\nloop = "sometimes"\n', "source.loop"),
        ('[meter]\ntype = "ina2xx_i2c"\naddress = 500\n', "meter.address"),
        ('[mqtt]\nprotocol = "4"\n', "mqtt.protocol"),
    ],
)
def test_bad_config_is_one_line_naming_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"'{key}" in msg
    assert str(path) in msg


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_example_config_validates_and_show_round_trips(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, example_text()))
    shown = to_toml(cfg)
    again = load_config(write(tmp_path, shown))
    assert again.model_dump() == cfg.model_dump()
    assert tomllib.loads(shown)["runtime"]["type"] == "tflite"


def test_cli_bad_key_exits_2_with_one_line(tmp_path: Path, lookout_cmd: list[str], clean_env: dict) -> None:
    path = write(tmp_path, "[pipeline]\nscore_treshold = 0.4\n")
    proc = subprocess.run(
        [*lookout_cmd, "run", "--config", str(path), "--no-mqtt", "--max-frames", "1"],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "pipeline.score_treshold" in lines[0]
    assert "Traceback" not in proc.stderr


def test_runtime_flag_switches_variant_keeping_shared_options(tmp_path: Path) -> None:
    """--runtime over a file configured for another runtime: shared options stay, variant keys go."""
    path = write(tmp_path, '[runtime]\ntype = "edgetpu"\nthreads = 3\ndevice = "usb:1"\n')
    cfg = load_config(path, {"runtime.type": "executorch"})
    assert cfg.runtime.type == "executorch"
    assert cfg.runtime.threads == 3
    same = load_config(path, {"runtime.type": "edgetpu"})
    assert same.runtime.device == "usb:1"


def test_relative_tls_files_are_relative_to_the_config_file(
    tmp_path: Path, lookout_cmd: list[str], clean_env: dict
) -> None:
    """As flash.sh and docs/deploy.md read them; `run` used to open them from its working directory
    (`/` under systemd), and `config check` from anywhere else than the config's folder said not found."""
    conf = tmp_path / "conf"
    (conf / "pki").mkdir(parents=True)
    (conf / "pki" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = conf / "c.toml"
    cfg.write_text('[mqtt]\nurl = "mqtts://127.0.0.1:8883"\n[mqtt.tls]\nca_file = "pki/ca.crt"\n')
    assert load_config(cfg).mqtt.tls.ca_file == conf / "pki" / "ca.crt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([*lookout_cmd, "config", "check", "--config", str(cfg)], capture_output=True, text=True,
                       env=clean_env | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}, cwd=elsewhere,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
