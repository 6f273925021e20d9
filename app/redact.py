"""The one redaction rule: secrets never reach output, errors, reports or logs.

`redact(text)` replaces the password of every URL's user info (`scheme://user:password@...` ->
`scheme://user:***@...`, also when the password holds unencoded '/', '#', '?' or '@'), and every secret
value this process has been given (`remember`: the config's passwords, a broker URL's password), with
`***`. The CLI passes its error lines and every log line through it (`LogFormatter`); `config show`,
doctor, the fleet and its history store use it for what they print.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
MIN_REMEMBERED = 4  # shorter values would mask ordinary words; URLs and typed secrets are still masked
# scheme://user:password@ -- the password runs to the last '@' before whitespace or a quote
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]*@")

_lock = threading.Lock()
_secrets: set[str] = set()


def remember(secret: str | None) -> None:
    """From now on, mask `secret` wherever it appears in what `redact` sees (no-op for short values)."""
    if secret and len(secret) >= MIN_REMEMBERED:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """`text` with URL passwords and remembered secrets replaced by `***`."""
    out = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: one may contain another
    for s in secrets:
        if s in out:
            out = out.replace(s, MASK)
    return out


class LogFormatter(logging.Formatter):
    """A logging formatter whose output went through `redact`, and whose message part is one line of
    printable text (a network string cannot forge log lines or send terminal escapes)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from app.inert import printable

        record.message = printable(redact(record.message))
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
