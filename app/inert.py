"""Strings from the network, made inert for the medium that shows them.

Anything a device (or any MQTT client allowed to write its tree) sends is data: its model, runtime,
version, labels, reasons, device id. Shown raw, an ESC sequence could retitle or clear the terminal or
plant an OSC 8 hyperlink, rich markup (`[blink]`, `[link=...]`) would be interpreted, HTML would be
markup and `$...$` would be matplotlib mathtext. One escaping rule, `printable`, and one function per
medium: `rich_text` (terminal), `html_text` (report and web pages), `chart_text` (matplotlib labels).
"""

from __future__ import annotations

import html
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

# Cc controls (C0, DEL, C1), Cf format characters (bidi overrides and isolates, zero-width and invisible
# characters, tags), Zl/Zp line and paragraph separators, Cs lone surrogates (not encodable as UTF-8).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(value: Any, limit: int | None = None) -> str:
    """`value` as text with every control, format and separator character written as a visible escape
    (ESC -> `\\x1b`, U+202E -> `\\u202e`); cut to `limit` characters (with '…') when given."""
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    if text.isprintable():  # fast path: no Cc/Cf/Z*/Cs (isprintable also rejects spaces other than ' ')
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)


def rich_text(value: Any, limit: int | None = None, style: str = "") -> Text:
    """A rich Text for a terminal table cell: escapes shown, no markup interpreted."""
    from rich.text import Text

    return Text(printable(value, limit), style=style)


def html_text(value: Any, limit: int | None = None) -> str:
    """Text for an HTML page: escapes shown, `<>&"'` escaped (safe in element text and quoted attributes)."""
    return html.escape(printable(value, limit), quote=True)


def chart_text(value: Any, limit: int | None = None) -> str:
    """Text for a matplotlib label or title: escapes shown, `$` not taken as mathtext."""
    return printable(value, limit).replace("$", r"\$")
