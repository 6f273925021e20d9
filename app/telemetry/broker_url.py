"""The one parser of broker URLs: `mqtt://[user[:password]@]host[:port]` or `mqtts://...`.

Used by the device's client (`mqtt.url`), the fleet monitor (`--broker`) and `lookout doctor`. Pure
(no paho import), so the fleet can use it alongside the topic contract. The password never shows in a
repr, in `str()` or in an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from app.errors import ConfigError
from app.redact import redact, remember

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


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


def parse_broker_url(url: str, what: str = "broker URL") -> BrokerAddress:
    """Parse `url`; ConfigError naming `what` (e.g. "mqtt.url", "--broker") and the redacted URL otherwise."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise ConfigError(f"{what} {shown!r}: not a URL") from None
    remember(unquote(parts.password) if parts.password else None)
    try:
        port = parts.port
    except ValueError:  # the error text would show what stood after the ':' (maybe part of a password)
        raise ConfigError(
            f"{what} {shown!r}: the port must be a number 1-65535 (percent-encode '/', '#', '?' and '@' "
            "in a password)"
        ) from None
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
