"""Shared fixtures: a real mosquitto broker, the repo's models, real photos, Raspberry Pi boards."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.telemetry.broker import Broker, mosquitto_path, start_broker

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
BOARDS = REPO / "tests" / "measure" / "fixtures" / "boards"
ASTRONAUT_FACE = (179.0, 81.0, 273.0, 176.0)  # x0, y0, x1, y1 in the 512x512 astronaut photo


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def astronaut_face() -> tuple[float, float, float, float]:
    """Ground-truth face box in skimage's astronaut photo (x0, y0, x1, y1)."""
    return ASTRONAUT_FACE


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh Debian mosquitto on a free 127.0.0.1 port, stopped by PID afterwards."""
    if not mosquitto_path():
        pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    b = start_broker("mosquitto")
    try:
        yield b
    finally:
        b.stop()


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut photo (512x512, one face), BGR like OpenCV frames."""
    from skimage import data

    return _bgr(data.astronaut())


@pytest.fixture(scope="session")
def no_face_photos_bgr() -> dict[str, np.ndarray]:
    """Real photos with no human face: coffee and chelsea (a cat)."""
    from skimage import data

    return {"coffee": _bgr(data.coffee()), "chelsea": _bgr(data.chelsea())}


def _coral_dir() -> Path | None:
    for candidate in (
        os.environ.get("LOOKOUT_CORAL_DIR"),
        REPO.parent / "shared" / "coral",  # CI: a copy of shared/ beside the clone
        Path("/work/shared/coral"),  # a worktree under /work/wt/
    ):
        if candidate and (Path(candidate) / "squat.bmp").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def coral_dir() -> Path:
    """Coral's public test data (photos, reference keypoints): shared/coral beside the checkout."""
    found = _coral_dir()
    if found is None:
        pytest.fail(
            "Coral test data not found: expected ../shared/coral beside the checkout or $LOOKOUT_CORAL_DIR"
        )
    return found


@pytest.fixture(scope="session")
def lookout_cmd() -> list[str]:
    """Command prefix that runs the CLI of this checkout in a subprocess."""
    return [sys.executable, "-m", "app"]


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: no user config, state under tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "LOOKOUT_CONFIG"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def demo_video() -> Path:
    """The demo video (real photos panned and zoomed), generated once and cached."""
    from app.vision.demo import demo_video_path

    return demo_video_path()


@dataclass
class PiBoard:
    """A copy of a fixture board: `root` stands for `/`, `bin` holds its `vcgencmd` (put it first on PATH)."""

    name: str
    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    def answer(self, command: str, text: str | None) -> None:
        """What `vcgencmd COMMAND` prints from now on (None: the firmware's unknown-command answer)."""
        path = self.dir / "vcgencmd" / f"{command}.txt"
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)

    def hang(self, command: str) -> None:
        """`vcgencmd COMMAND` never answers from now on."""
        (self.dir / "vcgencmd" / f"{command}.hang").touch()

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with LOOKOUT_HOST_ROOT at this board and its vcgencmd first on PATH."""
        return {
            **base,
            "LOOKOUT_HOST_ROOT": str(self.root),
            "PATH": f"{self.bin}:{base.get('PATH', os.defpath)}",
        }


@pytest.fixture(scope="session")
def pi_board(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., PiBoard]:
    """pi_board("pi4" | "pi5", throttled="0x50000", name=...) -> a fresh private copy of that fixture board."""

    def make(board: str, throttled: str | None = None, name: str | None = None) -> PiBoard:
        dest = tmp_path_factory.mktemp(name or board) / (name or board)
        shutil.copytree(BOARDS / board, dest, symlinks=False)
        dest.joinpath("bin").mkdir()
        shutil.copy2(BOARDS / "vcgencmd", dest / "bin" / "vcgencmd")
        b = PiBoard(name or board, dest)
        if throttled is not None:
            b.answer("get_throttled", f"throttled={throttled}\n")
        return b

    return make


def fill_disk(d: Path) -> Path:
    """Fill the file system under d to its last block (ENOSPC); the filler file, whose removal frees it."""
    filler = d / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """mount(name, size_kib): a real tmpfs of that size at tmp_path/name, unmounted afterwards.

    A small disk that really fills up (ENOSPC from the kernel), for the disk-full tests. Needs root
    (CI runs as root); skipped with the reason where mounting is not possible."""
    mounted: list[Path] = []

    def mount(name: str, size_kib: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (the disk-full tests run as root in CI)")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(d)],
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    try:
        yield mount
    finally:
        for d in mounted:
            if subprocess.run(["umount", str(d)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(d)], capture_output=True)  # still busy: detach
