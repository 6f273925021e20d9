"""The pieces of `make arm64-check` that decide pass or fail: the detection comparison, and what it reads
from lookout.service to run commands as the service would (the emulated runs themselves are the check)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from arm64_detections import compare, config_text  # noqa: E402
from arm64_device import Unit  # noqa: E402
from arm64_steps import Failure  # noqa: E402


def frames(*dets: list[tuple[float, tuple[float, ...]]]) -> dict[int, dict]:
    return {
        i: {"frame": i, "detections": [{"label": "face", "score": s, "box": list(b)} for s, b in d]}
        for i, d in enumerate(dets)
    }


FACE = (0.9181, (180.3, 79.1, 275.5, 174.3))
TWO = [(0.8, (10, 10, 50, 50)), (0.7, (100, 10, 150, 60))]
HOST = frames([FACE], [], TWO)


def test_identical_runs_match() -> None:
    assert compare(HOST, HOST, "tflite") == (3, 0.0, 0.0)


def test_within_tolerance_in_any_order() -> None:
    pi = frames(
        [(0.9185, (180.8, 79.1, 275.5, 174.3))],
        [],
        [(0.7, (100.9, 10, 150, 60)), (0.8, (10, 10, 50, 50.5))],  # listed in another order
    )
    n, ds, db = compare(HOST, pi, "tflite")
    assert n == 3 and ds == pytest.approx(4e-4) and db == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("pi", "reason"),
    [
        (frames([(0.9236, (180.7, 80.0, 277.8, 177.1))], [], TWO), "frame 0: host face 0.9181"),
        (frames([(0.9181, (180.3, 79.1, 276.6, 174.3))], [], TWO), "box 1.1 px"),
        (frames([FACE], [(0.6, (1, 1, 9, 9))], TWO), "frame 1: 0 detections on this host, 1 on the Pi"),
        (frames([FACE], []), "frames differ"),
    ],
)
def test_mismatches_fail_with_the_first_named(pi: dict, reason: str) -> None:
    with pytest.raises(Failure, match=re.escape(reason)):
        compare(HOST, pi, "x")


def test_unit_environment_is_read_from_the_installed_unit() -> None:
    unit = Unit.read(REPO / "systemd/lookout.service")
    assert unit.user == "lookout"
    assert unit.exec_start == ["/opt/lookout/venv/bin/lookout", "run", "--config", "/etc/lookout/config.toml"]
    assert unit.env["LOOKOUT_MODELS_DIR"] == "/opt/lookout/models"
    assert unit.env["XDG_CACHE_HOME"] == "/var/cache/lookout"
    assert unit.dirs["STATE_DIRECTORY"] == ("/var/lib/lookout", "0750")
    assert unit.umask == "0027"


def test_run_configs_are_valid_lookout_configs(tmp_path: Path) -> None:
    from app.config import load_config

    for runtime, artifact in (("tflite", None), ("tflite", "tflite-int8"), ("torchscript-lite", None)):
        path = tmp_path / "c.toml"
        path.write_text(config_text("pi-a72", 1883, runtime, artifact, str(tmp_path)))
        cfg = load_config(path)
        assert cfg.runtime.type == runtime and cfg.runtime.artifact == artifact
        assert cfg.source.type == "images" and cfg.mqtt.publish_empty is True
