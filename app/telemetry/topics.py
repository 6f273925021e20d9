"""The MQTT topic contract: `<prefix>/<device_id>/{status,detections,metrics,bench,events,presence,snapshot,
cmd/<verb>[/reply]}`.

Device side: `Topics("cam-1").detections`. Monitor side: `wildcard("status")` -> `lookout/+/status`,
`wildcard("metrics", share_group="fleet")` -> `$share/fleet/lookout/+/metrics`, and `parse(topic)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from app.errors import ConfigError

DEFAULT_PREFIX = "lookout"
KINDS = ("status", "detections", "metrics", "bench", "events", "presence", "snapshot")
VERBS = ("swap", "bench", "config")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VERB = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_device_id(device_id: str) -> str:
    """Return device_id if it is usable as one topic level, else raise ConfigError."""
    if not _ID.match(device_id or ""):
        raise ConfigError(f"device_id {device_id!r} must match [A-Za-z0-9_.-]{{1,64}} (no '/', '+', '#')")
    return device_id


def check_prefix(prefix: str) -> str:
    """Return prefix if it is usable as the first topic levels, else raise ConfigError."""
    if not prefix or any(c in prefix for c in "+#\x00") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(
            f"topic prefix {prefix!r} must be non-empty, without '+', '#' or a leading/trailing '/'"
        )
    return prefix


@dataclass(frozen=True)
class Topics:
    """Topics of one device."""

    device_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        check_prefix(self.prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def detections(self) -> str:
        return f"{self.base}/detections"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    @property
    def bench(self) -> str:
        return f"{self.base}/bench"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def presence(self) -> str:
        return f"{self.base}/presence"

    @property
    def snapshot(self) -> str:
        """A bare JPEG (retained), not JSON."""
        return f"{self.base}/snapshot"

    @property
    def cmd_filter(self) -> str:
        """Subscription filter for every command verb: `<prefix>/<id>/cmd/+`."""
        return f"{self.base}/cmd/+"

    @property
    def tree(self) -> str:
        """Everything this device may write: `<prefix>/<id>/#` (the ACL pattern)."""
        return f"{self.base}/#"

    def cmd(self, verb: str) -> str:
        if not _VERB.match(verb):
            raise ValueError(f"command verb {verb!r} is not a valid topic level")
        return f"{self.base}/cmd/{verb}"

    def cmd_reply(self, verb: str) -> str:
        return f"{self.cmd(verb)}/reply"


def wildcard(kind: str, prefix: str = DEFAULT_PREFIX, share_group: str | None = None) -> str:
    """Filter matching `kind` for every device: one of KINDS, cmd, cmd_reply or all.

    With `share_group`, an MQTT 5 shared subscription (`$share/<group>/...`) so monitors split the load.
    """
    check_prefix(prefix)
    tails = {k: k for k in KINDS} | {"cmd": "cmd/+", "cmd_reply": "cmd/+/reply", "all": "#"}
    if kind not in tails:
        raise ValueError(f"unknown topic kind {kind!r}; expected one of {sorted(tails)}")
    filt = f"{prefix}/+/{tails[kind]}"
    return f"$share/{share_group}/{filt}" if share_group else filt


class ParsedTopic(NamedTuple):
    device_id: str
    kind: str  # one of KINDS, cmd or cmd_reply
    verb: str | None  # the command verb for cmd and cmd_reply, else None


def parse(topic: str, prefix: str = DEFAULT_PREFIX) -> ParsedTopic | None:
    """Split a Lookout topic into (device_id, kind, verb); None for a topic outside the contract."""
    parts = topic.split("/")
    pre = prefix.split("/")
    if parts[: len(pre)] != pre:
        return None
    rest = parts[len(pre) :]
    if len(rest) < 2 or not _ID.match(rest[0]):
        return None
    dev, tail = rest[0], rest[1:]
    if len(tail) == 1 and tail[0] in KINDS:
        return ParsedTopic(dev, tail[0], None)
    if len(tail) == 2 and tail[0] == "cmd" and _VERB.match(tail[1]):
        return ParsedTopic(dev, "cmd", tail[1])
    if len(tail) == 3 and tail[0] == "cmd" and tail[2] == "reply" and _VERB.match(tail[1]):
        return ParsedTopic(dev, "cmd_reply", tail[1])
    return None
