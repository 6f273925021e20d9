"""The PowerMeter interface, the 'unavailable' meter, and helpers shared by the meter plugins."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

#: Runs a command (argv list) and returns its stdout; raises FileNotFoundError when the program is absent.
Runner = Callable[[list[str]], str]


def run_command(argv: list[str], timeout_s: float = 2.0) -> str:
    """Default command runner: stdout of argv, or OSError / RuntimeError with a one-line reason.

    The command runs in its own process group, killed whole when it outlives `timeout_s`: a hung helper
    (or one that forked a child holding the pipe) costs at most the timeout. A non-zero exit is a
    RuntimeError naming the most telling line of its output (an ``error_msg=`` line when there is one).
    """
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1.0)
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (err + "\n" + out).splitlines() if ln.strip()]
        told = next((ln for ln in lines if "error_msg=" in ln), lines[0] if lines else None)
        raise RuntimeError(f"{' '.join(argv)}: {told or f'exit status {proc.returncode}'}")
    return out


class PowerMeter:
    """A source of power readings. ``source`` names what is measured (or why nothing is).

    ``read_power_w()`` -> instantaneous watts or None; ``read_energy_j()`` -> a cumulative counter in
    joules (monotonic, wrap-around already undone) or None when the meter has no counter.
    """

    source: str = "unknown"
    available: bool = True
    #: True when read_energy_j() gives a cumulative counter (preferred for energy over windows).
    has_energy: bool = False
    #: Highest sampling rate worth using (from the meter's config).
    rate_hz: float = 200.0
    #: Reason of the last failed reading, if any.
    last_error: str | None = None

    def read_power_w(self) -> float | None:
        return None

    def read_energy_j(self) -> float | None:
        return None

    def close(self) -> None:
        """Release files or buses held by the meter."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r}>"


class UnavailableMeter(PowerMeter):
    """A meter that could not be opened: every reading is None and ``source`` says why."""

    available = False

    def __init__(self, source: str) -> None:
        self.source = source
        self.last_error = source


class SysfsValue:
    """One sysfs attribute kept open and re-read with pread at offset 0 (cheap at 200+ Hz)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)

    def read_int(self) -> int:
        return int(os.pread(self._fd, 64, 0).split()[0])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def os_reason(exc: OSError, path: Path | str) -> str:
    """'permission denied reading /x/y' style one-line reason."""
    what = (exc.strerror or type(exc).__name__).lower()
    return f"{what}: {path}"
