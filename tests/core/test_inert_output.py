"""Paths, folder names, device and meter names are data in local output: rich markup and terminal
escapes in them are shown, never interpreted (app/inert.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MARKUP = "[/x][red]"  # an unmatched closing tag made rich raise MarkupError; [red] was applied
ESC = "\x1b[2J"  # clear screen, shown as \x1b[2J


def cli(lookout_cmd: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    wide = {**env, "COLUMNS": "400"}  # one table row per line, so the assertions see whole cells
    return subprocess.run([*lookout_cmd, *args], capture_output=True, text=True, env=wide, timeout=300)


def shown_as_data(proc: subprocess.CompletedProcess, text: str) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "MarkupError" not in out, out
    assert "\x1b" not in out
    assert text.replace("\x1b", "\\x1b") in proc.stdout


def test_doctor_shows_a_models_dir_with_markup_and_escapes_as_data(
    lookout_cmd, clean_env, tmp_path: Path
) -> None:
    models = tmp_path / f"m{MARKUP}{ESC}"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"models_dir = {json.dumps(str(models))}\n[mqtt]\nenabled = false\n")
    proc = cli(lookout_cmd, clean_env, "doctor", "--no-probe", "--config", str(cfg))
    assert proc.returncode == 1, proc.stderr
    shown_as_data(proc, f"m{MARKUP}{ESC}")
    assert f"the configured pipeline cannot run: missing manifest {tmp_path}/m{MARKUP}\\x1b[2J" in proc.stdout


def test_models_list_shows_folder_names_and_the_models_dir_as_data(
    lookout_cmd, clean_env, tmp_path: Path, models_dir: Path
) -> None:
    root = tmp_path / f"a{MARKUP}"
    shutil.copytree(models_dir / "blazeface-short", root / "blazeface-short")
    folder = f"[red]bad{ESC}"  # a folder name cannot hold '/', so no closing tag here
    broken = root / folder
    broken.mkdir()
    (broken / "model.toml").write_text('name = "x"\n')
    proc = cli(lookout_cmd, clean_env, "models", "--models-dir", str(root), "list")
    assert proc.returncode == 0, proc.stderr
    shown_as_data(proc, f"/a{MARKUP}")  # the title, wrapped to the table's width
    shown_as_data(proc, folder)
    assert "[red]bad\\x1b[2J: invalid manifest" in proc.stderr


def test_bench_shows_a_meter_name_with_markup_as_data(lookout_cmd, clean_env, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    name = f"ina{MARKUP}{ESC}"
    cfg.write_text(
        f'[mqtt]\nenabled = false\n[meter]\ntype = "hwmon"\nname = {json.dumps(name)}\n'
        f"root = {json.dumps(str(tmp_path))}\n"
    )
    args = ("bench", "--config", str(cfg), "--runtime", "tflite", "--frames", "3", "--warmup", "1")
    proc = cli(lookout_cmd, clean_env, *args)
    assert proc.returncode == 0, proc.stderr
    shown_as_data(proc, f"power: hwmon:{name} unavailable")
