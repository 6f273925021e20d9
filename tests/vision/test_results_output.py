"""`lookout run --output`: one JSON line per processed frame, from a real model on real photos."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from app.detection import Detection, Keypoint

PHOTOS = ("bird.bmp", "cat.bmp", "face.jpg", "grace_hopper.bmp", "parrot.jpg", "squat.bmp")
KEYS = {"frame", "source", "ts", "model", "runtime", "detections", "latency_ms"}


def _photos(tmp_path: Path, coral_dir: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(coral_dir / name, folder)
    return folder


def _run(lookout_cmd, env, tmp_path: Path, folder: Path, output: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*lookout_cmd, "run", "--model", "person-detector", "--runtime", "tflite", "--source", str(folder),
         "--max-frames", str(len(PHOTOS)), "--no-mqtt", "--output", output,
         "--state-dir", str(tmp_path / "state")],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_one_line_per_frame_with_file_names_and_keypoints(
    tmp_path: Path, coral_dir: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    folder = _photos(tmp_path, coral_dir)
    out = tmp_path / "out" / "frames.jsonl"
    res = _run(lookout_cmd, clean_env, tmp_path, folder, str(out))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["frame"] for rec in lines] == list(range(len(PHOTOS)))
    assert [rec["source"] for rec in lines] == list(PHOTOS)  # the folder's sorted order
    for rec in lines:
        assert set(rec) == KEYS and rec["model"] == "person-detector" and rec["runtime"] == "tflite"
        assert rec["latency_ms"]["infer"] > 0 and rec["ts"] > 1.6e9
        people = rec["source"] in ("face.jpg", "grace_hopper.bmp", "squat.bmp")
        assert bool(rec["detections"]) == people, rec
        for d in rec["detections"]:
            assert d["label"] == "person" and len(d["box"]) == 4
            assert [k["name"] for k in d["keypoints"]][:2] == ["hip_centre", "body_extent"]
    squat = next(r for r in lines if r["source"] == "squat.bmp")["detections"][0]["box"]
    assert squat[3] - squat[1] > 400  # a whole person in the 610 px high photo, not a face
    assert json.loads(res.stdout.strip().splitlines()[-1])["frames"] == len(PHOTOS)


def test_dash_writes_frames_to_stdout_and_the_summary_to_stderr(
    tmp_path: Path, coral_dir: Path, lookout_cmd: list[str], clean_env: dict[str, str]
) -> None:
    res = _run(lookout_cmd, clean_env, tmp_path, _photos(tmp_path, coral_dir), "-")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == len(PHOTOS) and all(set(rec) == KEYS for rec in lines)
    assert '"frames": 6' in res.stderr


def test_keypoints_appear_in_json_only_when_present() -> None:
    plain = Detection("face", 0.9, (1.0, 2.0, 3.0, 4.0))
    assert set(plain.to_json()) == {"label", "score", "box"}
    posed = Detection("person", 0.8, (0.0, 0.0, 5.0, 5.0), (Keypoint("nose", 1.26, 2.0, 0.5),))
    assert posed.to_json()["keypoints"] == [{"name": "nose", "x": 1.3, "y": 2.0, "score": 0.5}]


def test_mqtt_contract_carries_keypoints_and_refuses_malformed_ones() -> None:
    import pytest

    from app.telemetry import contract
    from app.telemetry.schemas import is_valid

    posed = Detection("person", 0.8, (0.0, 0.0, 5.0, 5.0), (Keypoint("nose", 1.0, 2.0, 0.5),))
    plain = Detection("face", 0.9, (1.0, 2.0, 3.0, 4.0))
    data = {"seq": 1, "ts": 1.7e9, "frame": 0, "model": "m", "runtime": "tflite",
            "detections": [posed.to_json(), plain.to_json()], "latency_ms": {"infer": 1.0}}  # fmt: skip
    wire = json.loads(contract.build("detections", data).to_json())
    assert wire["detections"][0]["keypoints"] == [{"name": "nose", "x": 1.0, "y": 2.0, "score": 0.5}]
    assert "keypoints" not in wire["detections"][1]  # absent, not null
    assert is_valid("detections", wire)
    data["detections"][0]["keypoints"][0]["score"] = 2.0
    with pytest.raises(contract.ContractError, match="keypoints"):
        contract.build("detections", data)
