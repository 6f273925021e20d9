"""Manifest path rules (#15 item 1) and broken manifests (#15 item 12), on copies of the real models.

A model is named by name only and always found in the models directory, never relative to the working
directory; every file a manifest names resolves inside its model's folder. One broken manifest is
reported by name while the other models keep working.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app import zoo
from app.errors import ArtifactError
from app.zoo import list_manifests, load_manifest, sha256_file

PASSWD = Path("/etc/passwd")


def _retarget(manifest: Path, old: str, new: str) -> None:
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new))


@pytest.fixture
def evil_tree(tmp_path: Path, models_dir: Path) -> Path:
    """tmp/x/models (one good model) and tmp/x/evil (a complete, loadable model outside models/)."""
    x = tmp_path / "x"
    shutil.copytree(models_dir / "blazeface-short", x / "models" / "blazeface-short")
    shutil.copytree(models_dir / "blazeface-short", x / "evil")
    _retarget(x / "evil" / "model.toml", 'name = "blazeface-short"', 'name = "evil"')
    return x


def test_a_bare_name_never_resolves_against_the_working_directory(
    evil_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a working directory that holds evil/ (and evil.toml), "evil" means models_dir/evil only."""
    monkeypatch.chdir(evil_tree)
    shutil.copy(evil_tree / "evil" / "model.toml", evil_tree / "evil.toml")
    for name in ("evil", "evil.toml"):
        with pytest.raises(ArtifactError) as err:
            load_manifest(name, evil_tree / "models")
        msg = str(err.value)
        assert "\n" not in msg and str(evil_tree / "models" / name) in msg


def test_model_names_are_names_only() -> None:
    for ok in ("blazeface-short", "mobilenet_v1.0", "m2"):
        assert zoo.check_model_name(ok) == ok
    for bad in ("evil/model.toml", "tmp/x/evil/model.toml", "./evil", "../evil", ".", "..", ".hidden",
                "a\\b", "/etc/passwd", "~root", "", "x" * 200, "a\x00b"):  # fmt: skip
        with pytest.raises(ArtifactError, match="model name"):
            zoo.check_model_name(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file", "../../../../etc/passwd"),
        ("file", "/etc/passwd"),
        ("file", "sub/../../x.tflite"),
        ("licence_file", "../../../../etc/passwd"),
        ("licence_file", "/etc/passwd"),
    ],
)
def test_manifest_paths_outside_the_model_folder_are_refused(zoo_copy: Path, field: str, value: str) -> None:
    manifest = zoo_copy / "blazeface-short" / "model.toml"
    old = 'file = "face_detection_short_range.tflite"' if field == "file" else 'licence_file = "LICENSE"'
    _retarget(manifest, old, f'{field} = "{value}"')
    with pytest.raises(ArtifactError) as err:
        load_manifest("blazeface-short", zoo_copy)
    msg = str(err.value)
    assert "\n" not in msg and "inside the model folder" in msg and field in msg


def test_a_symlink_out_of_the_model_folder_is_refused(zoo_copy: Path) -> None:
    folder = zoo_copy / "blazeface-short"
    (folder / "passwd.tflite").symlink_to(PASSWD)
    _retarget(folder / "model.toml", '"face_detection_short_range.tflite"', '"passwd.tflite"')
    _retarget(folder / "model.toml", "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
              sha256_file(PASSWD))  # fmt: skip
    m = load_manifest("blazeface-short", zoo_copy)
    with pytest.raises(ArtifactError, match="outside the model folder"):
        m.verify_artifact("tflite")


def test_models_verify_does_not_hash_etc_passwd(
    zoo_copy: Path, lookout_cmd: list[str], clean_env: dict
) -> None:
    """The issue's manifest: `file = "../../../../etc/passwd"` with /etc/passwd's own sha256."""
    manifest = zoo_copy / "blazeface-short" / "model.toml"
    depth = "../" * (len(manifest.parent.resolve().parts) + 1)
    _retarget(manifest, '"face_detection_short_range.tflite"', f'"{depth}etc/passwd"')
    _retarget(
        manifest, "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633", sha256_file(PASSWD)
    )
    r = subprocess.run(
        [*lookout_cmd, "models", "--models-dir", str(zoo_copy), "verify"],
        capture_output=True, text=True, env=clean_env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "0 artifacts verified" in r.stdout  # the good model's manifest is refused as a whole
    assert "inside the model folder" in r.stderr and "blazeface-short" in r.stderr
    assert "Traceback" not in r.stderr


# --- #15 item 12: one broken manifest ------------------------------------------------------------
@pytest.fixture
def zoo_with_broken(tmp_path: Path, models_dir: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(models_dir / "blazeface-short", root / "blazeface-short")
    (root / "broken").mkdir()
    (root / "broken" / "model.toml").write_text('name = "broken"\ntask = "detection"\n')  # missing fields
    (root / "garbage").mkdir()
    (root / "garbage" / "model.toml").write_bytes(b"\xff\xfe\x00garbage")
    return root


def test_scan_reports_broken_manifests_and_keeps_the_rest(zoo_with_broken: Path) -> None:
    scan = zoo.scan_models(zoo_with_broken)
    assert [m.name for m in scan.manifests] == ["blazeface-short"]
    assert sorted(scan.broken) == ["broken", "garbage"]
    assert "missing key" in scan.broken["broken"] and "\n" not in scan.broken["broken"]
    assert [m.name for m in list_manifests(zoo_with_broken)] == ["blazeface-short"]


def test_unknown_model_message_survives_a_broken_manifest(zoo_with_broken: Path) -> None:
    with pytest.raises(ArtifactError) as err:
        load_manifest("nope", zoo_with_broken)
    msg = str(err.value)
    assert "known models: blazeface-short" in msg and "broken" in msg and "\n" not in msg


def test_models_list_and_verify_report_the_broken_model_and_keep_working(
    zoo_with_broken: Path, lookout_cmd: list[str], clean_env: dict
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*lookout_cmd, "models", "--models-dir", str(zoo_with_broken), *args],
                              capture_output=True, text=True, env=clean_env, timeout=120)  # fmt: skip

    listed = cli("list")
    assert "Traceback" not in listed.stderr, listed.stderr
    assert "blazeface-short" in listed.stdout
    assert "broken" in listed.stdout + listed.stderr and "garbage" in listed.stdout + listed.stderr
    verified = cli("verify")
    assert verified.returncode == 2 and "Traceback" not in verified.stderr
    assert "broken" in verified.stderr and "garbage" in verified.stderr
    assert "6 artifacts verified" in verified.stdout  # every artifact of the good model still checked
    named = cli("verify", "blazeface-short")
    assert named.returncode == 0, named.stderr
