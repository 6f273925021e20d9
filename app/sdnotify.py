"""systemd readiness and watchdog notifications over $NOTIFY_SOCKET (sd_notify(3), no library).

Every function is a no-op returning False when the process was not started by systemd with
`Type=notify` (NOTIFY_SOCKET unset), so the service code calls them unconditionally.

The watchdog is fed by the pipeline's liveness: the service's main loop calls `Watchdog.beat()` on
each tick while `Pipeline.stalled()` finds no stage stuck in one call, and `beat()` sends `WATCHDOG=1`
at most every half interval. A slow frame rate (one frame a minute) keeps the pings coming; a hung
inference or a stuck camera stops them, and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _address(env: Mapping[str, str]) -> str | None:
    raw = env.get("NOTIFY_SOCKET", "")
    if not raw:
        return None
    if raw.startswith("@"):  # abstract namespace: leading NUL instead of "@"
        return "\0" + raw[1:]
    return raw


def _one_line(text: str) -> str:
    """A value must not contain newlines: each line of a notification is one assignment."""
    return " ".join(text.splitlines()).strip()


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification datagram (`"READY=1\\nSTATUS=..."`); True when it was sent."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the service is up (model loaded and warmed up): `READY=1`."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def status(text: str) -> bool:
    """Free-form one-line status shown by `systemctl status`: `STATUS=...`."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """One watchdog keep-alive ping: `WATCHDOG=1`."""
    return notify("WATCHDOG=1")


def stopping(status: str | None = None) -> bool:
    """Tell systemd a clean shutdown has begun: `STOPPING=1`."""
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def watchdog_interval_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog interval systemd expects pings within, or None when the watchdog is off.

    Like sd_watchdog_enabled(3): $WATCHDOG_USEC must be a positive integer and, when $WATCHDOG_PID is
    set, it must name this process (children inherit the environment but must not ping).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return value / 1_000_000


class Watchdog:
    """Rate-limited watchdog: call `beat()` whenever the pipeline is known to be live.

    Sends `WATCHDOG=1` (plus an optional `STATUS=` line) when at least half the interval has passed
    since the last ping. Disabled (every beat returns False) when systemd set no watchdog.
    """

    def __init__(
        self,
        interval_s: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        send: Callable[[str], bool] = notify,
    ) -> None:
        self.interval_s = watchdog_interval_s() if interval_s is None else interval_s
        self._clock = clock
        self._send = send
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None and self.interval_s > 0

    def beat(self, status: str | None = None) -> bool:
        """Record progress; ping systemd if due. True when a ping was sent."""
        interval = self.interval_s
        if interval is None or interval <= 0:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < interval / 2:
            return False
        message = "WATCHDOG=1" + (f"\nSTATUS={_one_line(status)}" if status else "")
        sent = self._send(message)
        if sent:
            self._last = now
        return sent
