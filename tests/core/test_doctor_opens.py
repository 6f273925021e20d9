"""`lookout doctor` says ok only for what it opened: a source that gave a frame, a runtime that imported
and ran the model, a meter that gave a reading, a camera node that answered as a V4L2 capture device."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.commands.doctor import check_cameras


def doctor(lookout_cmd: list[str], env: dict, config: Path) -> dict[tuple[str, str], dict]:
    proc = subprocess.run(
        [*lookout_cmd, "doctor", "--json", "--no-probe", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return {(c["area"], c["name"]): c for c in json.loads(proc.stdout)["checks"]}


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "doctor.toml"
    path.write_text('model = "blazeface-short"\n[mqtt]\nenabled = false\n' + body)
    return path


def test_demo_source_is_opened_and_gives_a_frame(lookout_cmd, clean_env, tmp_path: Path) -> None:
    env = {**clean_env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    checks = doctor(lookout_cmd, env, config(tmp_path, '[source]\ntype = "opencv"\nuri = "demo"\n'))
    source = checks[("pipeline", "source")]
    assert source["ok"] is True
    assert source["detail"] == "opencv demo: read a 640x480 frame"
    assert list((tmp_path / "cache/lookout").glob("demo-*.mp4"))  # really generated and opened


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("video", "cannot decode video file"),  # a file that exists but is no video
        ("images", "cannot read image"),  # an image folder whose only image is not decodable
    ],
)
def test_a_source_that_exists_but_gives_no_frame_is_not_ok(
    lookout_cmd, clean_env, tmp_path: Path, make: str, reason: str
) -> None:
    if make == "video":
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"not a video at all" * 100)
        body = f'[source]\ntype = "opencv"\nuri = "{clip}"\n'
    else:
        folder = tmp_path / "shots"
        folder.mkdir()
        (folder / "a.jpg").write_bytes(b"\xff\xd8 truncated")
        body = f'[source]\ntype = "images"\nfolder = "{folder}"\nloop = false\n'
    source = doctor(lookout_cmd, clean_env, config(tmp_path, body))[("pipeline", "source")]
    assert source["ok"] is False
    assert reason in source["detail"], source["detail"]


def test_runtime_that_is_found_but_does_not_import_is_not_ok(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """ai_edge_litert present on disk but its native library missing: found is not enough."""
    fake = tmp_path / "site" / "ai_edge_litert"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise ImportError("libLiteRt.so: cannot open shared object file: No such file or directory")\n'
    )
    env = {**clean_env, "PYTHONPATH": str(tmp_path / "site")}
    checks = doctor(lookout_cmd, env, config(tmp_path, ""))
    litert = checks[("runtime", "tflite")]
    assert litert["ok"] is False
    assert "import ai_edge_litert failed: ImportError: libLiteRt.so" in litert["detail"]


def test_runtime_that_crashes_when_opened_is_not_ok(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """A library that kills its process (SIGSEGV, as LiteRT did under emulation) is reported, not fatal."""
    fake = tmp_path / "site" / "ai_edge_litert"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    env = {**clean_env, "PYTHONPATH": str(tmp_path / "site")}
    litert = doctor(lookout_cmd, env, config(tmp_path, ""))[("runtime", "tflite")]
    assert litert["ok"] is False
    assert "died with SIGSEGV" in litert["detail"]


def test_working_runtime_names_its_version_and_ran_the_model(lookout_cmd, clean_env, tmp_path: Path) -> None:
    from importlib.metadata import version

    litert = doctor(lookout_cmd, clean_env, config(tmp_path, ""))[("runtime", "tflite")]
    assert litert["ok"] is True
    assert litert["detail"].startswith(
        f"ai-edge-litert {version('ai-edge-litert')}; ran blazeface-short:tflite"
    )


def hwmon_tree(root: Path, **files: str) -> Path:
    dev = root / "hwmon3"
    dev.mkdir(parents=True)
    (dev / "name").write_text("ina219\n")
    for name, text in files.items():
        (dev / name).write_text(text)
    return root


def test_meter_ok_only_with_a_reading(lookout_cmd, clean_env, tmp_path: Path) -> None:
    """The configured hwmon meter on a fixture sysfs tree (real ina2xx file format, microwatts)."""
    good = hwmon_tree(tmp_path / "good", power1_input="4210000\n")
    body = f'[meter]\ntype = "hwmon"\nroot = "{good}"\n'
    meter = doctor(lookout_cmd, clean_env, config(tmp_path, body))[("meter", "hwmon")]
    assert meter["ok"] is True
    assert meter["detail"].endswith("read 4.21 W")
    broken = hwmon_tree(tmp_path / "broken", power1_input="\n")  # the driver returned nothing
    body = f'[meter]\ntype = "hwmon"\nroot = "{broken}"\n'
    meter = doctor(lookout_cmd, clean_env, config(tmp_path, body))[("meter", "hwmon")]
    assert meter["ok"] is False


def test_video_nodes_that_are_not_v4l2_capture_devices_are_not_ok(tmp_path: Path) -> None:
    (tmp_path / "video0").write_text("")  # a plain file: open works, VIDIOC_QUERYCAP does not
    os.symlink("/dev/null", tmp_path / "video1")  # a character device that is no V4L2 device
    v4l2 = check_cameras(tmp_path)[0]
    assert v4l2.ok is False
    assert f"{tmp_path}/video0: not a v4l2 device" in v4l2.detail
    assert f"{tmp_path}/video1: not a v4l2 device" in v4l2.detail
    assert (
        check_cameras(tmp_path / "none")[0].detail == f"no V4L2 capture device under {tmp_path}/none/video*"
    )


def test_pipeline_cannot_run_on_a_runtime_that_is_found_but_does_not_import(
    lookout_cmd, clean_env, tmp_path: Path
) -> None:
    """A library present on disk but broken (a bad wheel, a missing shared object) is not a usable
    runtime: the pipeline's runtime line uses what opening it found, not merely that it is installed."""
    site = tmp_path / "site"
    (site / "onnxruntime").mkdir(parents=True)
    (site / "onnxruntime" / "__init__.py").write_text(
        "raise ImportError('libonnxruntime.so: broken build')\n"
    )
    path = os.pathsep.join(filter(None, [str(site), clean_env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [*lookout_cmd, "doctor", "--json", "--no-probe", "--config",
         str(config(tmp_path, '[runtime]\ntype = "onnxruntime"\n[source]\ntype = "synthetic"\n'))],
        capture_output=True, text=True, env={**clean_env, "PYTHONPATH": path}, timeout=240,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["can_run"] is False
    runtime = next(c for c in out["checks"] if (c["area"], c["name"]) == ("pipeline", "runtime"))
    assert "broken build" in runtime["detail"]
