"""The Raspberry Pi firmware's ``vcgencmd``: one way to ask it, every failure a one-line reason.

Used by the health reader (get_throttled, measure_temp) and the Pi 5 PMIC meter (pmic_read_adc). The
firmware answers an unknown command with ``error=1 error_msg="Command not registered"``; without
``/dev/vcio`` it says so and exits non-zero; a wedged firmware mailbox can hang the call. Each of these
becomes a ``VcgencmdError`` whose text names the command and what went wrong, and a call never takes
longer than ``timeout_s`` (the runner kills it). After a timeout the command is not asked again for
``backoff_s``, so a hung firmware costs the caller one timeout per back-off period, not one per call.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable

from app.measure.power.base import Runner, run_command

_ERROR_MSG = re.compile(r'error_msg="([^"]*)"')


class VcgencmdError(RuntimeError):
    """vcgencmd answered with an error, exited non-zero, hung, or is not installed."""


class Vcgencmd:
    """Runs `vcgencmd <command>` through `run` (argv -> stdout); `clock` is injectable for the back-off."""

    def __init__(
        self,
        path: str = "vcgencmd",
        run: Runner | None = None,
        timeout_s: float = 1.0,
        backoff_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.run = run or functools.partial(run_command, timeout_s=timeout_s)
        self.backoff_s = backoff_s
        self.clock = clock
        self._missing: str | None = None
        self._quiet: dict[str, tuple[float, str]] = {}  # command -> (ask again after, reason)

    def query(self, command: str) -> str:
        """The firmware's answer to `command`; VcgencmdError with a one-line reason otherwise."""
        if self._missing:
            raise VcgencmdError(self._missing)
        quiet = self._quiet.get(command)
        if quiet is not None:
            until, reason = quiet
            if self.clock() < until:
                raise VcgencmdError(f"{reason} (not asked again for {until - self.clock():.0f} s)")
            del self._quiet[command]
        try:
            out = self.run([self.path, command])
        except FileNotFoundError:
            self._missing = f"{self.path} not found (not a Raspberry Pi?)"
            raise VcgencmdError(self._missing) from None
        except (OSError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "timed out" in reason:
                self._quiet[command] = (self.clock() + self.backoff_s, reason)
            raise VcgencmdError(_told(reason)) from None
        if out.lstrip().startswith("error="):
            raise VcgencmdError(f"{self.path} {command}: {_told(out)}")
        return out


def _told(text: str) -> str:
    """The firmware's error message out of an answer (or its first line), kept to one short line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or ["no output"]
    line = next((ln for ln in lines if "error_msg=" in ln), lines[0])
    m = _ERROR_MSG.search(line)
    if m:
        cut = line.find("error=")
        line = (line[:cut] if cut >= 0 else "") + m.group(1)
    return line[:160]
