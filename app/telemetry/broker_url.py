"""The one parser of broker URLs: `mqtt://[user[:password]@]host[:port]` or `mqtts://...`.

Used by the device's client (`mqtt.url`), the fleet monitor (`--broker`) and `lookout doctor`. Pure
(no paho import), so the fleet can use it alongside the topic contract. The password never shows in a
repr, in `str()` or in an error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from app.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*:)[^/]*@")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker is and how to log in; `tls` for mqtts. repr and str leave the password out."""

    scheme: Literal["mqtt", "mqtts"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        """The URL with the password replaced by `***` (safe for logs and reports)."""
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"


def redact_url(url: str) -> str:
    """`url` with the password of its user info (if any) replaced by `***`."""
    return _USERINFO_PASSWORD.sub(r"\1***@", url)


def parse_broker_url(url: str, what: str = "broker URL") -> BrokerAddress:
    """Parse `url`; ConfigError naming `what` (e.g. "mqtt.url", "--broker") and the redacted URL otherwise."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{what} {shown!r}: {redact_url(str(exc))}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"{what} {shown!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    if port == 0:
        raise ConfigError(f"{what} {shown!r}: port must be 1-65535")
    scheme: Literal["mqtt", "mqtts"] = "mqtts" if parts.scheme == "mqtts" else "mqtt"
    return BrokerAddress(
        scheme,
        parts.hostname,
        port if port is not None else DEFAULT_PORTS[scheme],
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
