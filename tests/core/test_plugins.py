"""One plugin mechanism: every kind is an entry-point group; broken plugins are reported, not dropped."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app import plugins
from app.errors import ConfigError, LookoutError
from app.measure.power import make_meter
from app.vision.decoders import make_decoder
from app.vision.sources import SourceError, open_source

GROUPS = (plugins.RUNTIMES, plugins.DECODERS, plugins.METERS, plugins.SOURCES)


def test_installed_entry_points_match_pyproject_and_all_import(repo_root: Path) -> None:
    declared = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["entry-points"]
    for group in GROUPS:
        found = plugins.discover(group)
        want = declared[group.name]
        # a stale install (pyproject changed, `make venv` not rerun) shows here, named
        assert {n: p.target for n, p in found.items() if n in want} == want, f"reinstall: {group.name}"
        broken = {n: p.error for n, p in found.items() if p.obj is None}
        assert not broken, broken


PLUGIN_MODULE = """
import numpy as np
from app.vision.sources import FrameSource

class GreyFrames(FrameSource):
    def __init__(self, cfg, reconnect, on_state=None):
        super().__init__(f"grey {cfg.level}", reconnect, on_state)
        self.level = cfg.level

    def _grab(self, stop):
        return np.full((4, 6, 3), self.level, np.uint8)

def open_meter(cfg, **roots):
    raise OSError("no such rail")
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A third-party distribution on sys.path registering one working and one broken plugin per kind."""
    dist = tmp_path / "lookout_extra-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lookout-extra\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[lookout.sources]\ngrey = lookout_extra:GreyFrames\nbroken = lookout_extra_missing:Source\n"
        "[lookout.decoders]\nbroken = lookout_extra_missing:Decoder\n"
        "[lookout.meters]\nrail = lookout_extra:open_meter\nbroken = lookout_extra_missing:open_meter\n"
    )
    (tmp_path / "lookout_extra.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_third_party_source_is_picked_by_its_type(third_party: Path) -> None:
    src = open_source(SimpleNamespace(type="grey", level=7))
    try:
        frame = src.read(threading.Event())
    finally:
        src.close()
    assert frame is not None and frame.shape == (4, 6, 3) and np.all(frame == 7)
    assert "grey" in plugins.names(plugins.SOURCES) and "opencv" in plugins.names(plugins.SOURCES)


def test_broken_plugins_are_reported_with_their_import_error(third_party: Path) -> None:
    with pytest.raises(
        SourceError,
        match=r"source 'broken' \(lookout_extra_missing:Source\) failed to import: ModuleNotFoundError",
    ):
        open_source(SimpleNamespace(type="broken"))
    with pytest.raises(ConfigError, match=r"decoder 'broken' .* failed to import: ModuleNotFoundError"):
        make_decoder("broken", ["face"])
    meter = make_meter(SimpleNamespace(type="broken"))
    assert meter.read_power_w() is None
    assert "power meter 'broken'" in meter.source and "ModuleNotFoundError" in meter.source
    failing = make_meter(SimpleNamespace(type="rail"))  # imports, but cannot open: never raises
    assert failing.read_power_w() is None and "rail unavailable: OSError: no such rail" in failing.source
    found = plugins.discover(plugins.DECODERS)
    assert found["broken"].obj is None and "lookout_extra_missing" in (found["broken"].error or "")
    assert found["blazeface"].obj is not None


def test_unknown_names_list_what_is_registered() -> None:
    with pytest.raises(
        SourceError, match="unknown source 'nope'; registered: images, opencv, picamera2, synthetic"
    ):
        open_source(SimpleNamespace(type="nope"))
    assert "unknown power meter 'nope'; registered: hwmon," in make_meter(SimpleNamespace(type="nope")).source
    empty = plugins.Group("lookout.nothing-here", "widget")
    with pytest.raises(
        LookoutError, match=r"nothing is registered under entry-point group lookout\.nothing-here"
    ):
        plugins.load(empty, "x")
