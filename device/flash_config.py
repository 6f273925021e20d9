#!/usr/bin/env python3
"""flash.sh's config step (Python 3.11+ standard library only): read the device's lookout config and
write the copy that goes onto the card.

    flash_config.py CONFIG BUNDLE_DIR [--device-id ID]

- BUNDLE_DIR/config.toml: CONFIG's text with the top-level ``device_id`` set (when given) and the
  ``[mqtt.tls]`` files pointed at /etc/lookout/tls/ (where first boot installs them); comments and layout
  are kept, and the result is parsed back to check it says what was meant.
- BUNDLE_DIR/tls/{ca.crt,client.crt,client.key}: copies of the files the config names (relative paths
  are relative to CONFIG's folder).
- stdout: shell assignments for flash.sh (RUNTIME_TYPE, TLS_FILES, WARNINGS), shell-quoted.
Any problem is one line on stderr and exit status 2. Secrets are never printed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

DEVICE_TLS = "/etc/lookout/tls"
TLS_NAMES = {"ca_file": "ca.crt", "cert_file": "client.crt", "key_file": "client.key"}
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\s*(#.*)?$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Refused(Exception):
    """One line for the user."""


def _key_line(key: str) -> re.Pattern[str]:
    """`key = <value>` at the start of a line (a bare or quoted key), value group 1."""
    return re.compile(rf'^(\s*"?{re.escape(key)}"?\s*=\s*)(.*?)(\s*(#.*)?)$')


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewrite(text: str, device_id: str | None, tls: dict[str, str]) -> str:
    """Set the top-level device_id and the mqtt.tls file keys in `text`, keeping everything else."""
    lines = text.splitlines()
    out: list[str] = []
    table = ""
    for line in lines:
        m = _TABLE.match(line)
        if m and not line.lstrip().startswith("[["):
            table = m.group(1).replace('"', "").replace(" ", "")
            out.append(line)
            continue
        if table == "" and device_id is not None and _key_line("device_id").match(line):
            continue  # replaced by the line put in front
        for key, new in tls.items():
            for prefix, where in (("", "mqtt.tls"), ("tls.", "mqtt"), ("mqtt.tls.", "")):
                pattern = _key_line(prefix + key)
                if table == where and pattern.match(line):
                    line = pattern.sub(lambda mm, new=new: mm.group(1) + _toml_str(new) + mm.group(3), line)
            if table == "mqtt" and re.match(r"^\s*tls\s*=\s*\{", line):  # an inline table
                line = re.sub(
                    rf"""({re.escape(key)}\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')""",
                    lambda mm, new=new: mm.group(1) + _toml_str(new),
                    line,
                )
        out.append(line)
    if device_id is not None:
        out.insert(0, f"device_id = {_toml_str(device_id)}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    args = list(argv)
    device_id = None
    if "--device-id" in args:
        i = args.index("--device-id")
        device_id = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        raise Refused("usage: flash_config.py CONFIG BUNDLE_DIR [--device-id ID]")
    config, bundle = Path(args[0]), Path(args[1])
    if device_id is not None and not _ID_RE.match(device_id):
        raise Refused(f"--device-id {device_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
    try:
        text = config.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"config {config}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise Refused(f"config {config} is not valid TOML: {exc}") from None
    mqtt = data.get("mqtt") or {}
    tls_cfg = mqtt.get("tls") or {}
    given = {k: tls_cfg[k] for k in TLS_NAMES if tls_cfg.get(k)}
    if ("cert_file" in given) != ("key_file" in given):
        raise Refused(f"config {config}: [mqtt.tls] cert_file and key_file go together")
    tls_dir = bundle / "tls"
    targets: dict[str, str] = {}
    for key, value in given.items():
        src = Path(str(value)).expanduser()
        src = src if src.is_absolute() else config.resolve().parent / src
        if not src.is_file():
            raise Refused(
                f"config {config}: [mqtt.tls] {key} {value} not found (relative paths: from the config's folder)"
            )
        tls_dir.mkdir(parents=True, exist_ok=True)
        dest = tls_dir / TLS_NAMES[key]
        try:
            shutil.copyfile(src, dest)
        except OSError as exc:
            raise Refused(f"config {config}: [mqtt.tls] {key} {src}: {exc.strerror}") from None
        dest.chmod(0o600 if key == "key_file" else 0o644)
        targets[key] = f"{DEVICE_TLS}/{TLS_NAMES[key]}"
    new_text = rewrite(text, device_id, targets)
    check = tomllib.loads(new_text)
    got = (check.get("mqtt") or {}).get("tls") or {}
    if any(got.get(k) != v for k, v in targets.items()) or (
        device_id is not None and check.get("device_id") != device_id
    ):
        raise Refused(
            f"config {config}: could not point [mqtt.tls] at {DEVICE_TLS} (write it as a [mqtt.tls] table "
            "with ca_file / cert_file / key_file keys)"
        )
    (bundle / "config.toml").write_text(new_text, encoding="utf-8")
    warnings = []
    url = str(mqtt.get("url", ""))
    has_password = bool(mqtt.get("password")) or bool(re.match(r"^[a-z]+://[^/@:]*:[^/@]+@", url))
    if has_password and not url.startswith("mqtts://"):
        warnings.append("the broker password travels unencrypted (mqtt://): use mqtts:// with [mqtt.tls]")
    runtime = (data.get("runtime") or {}).get("type", "tflite")
    print(f"RUNTIME_TYPE={shlex.quote(str(runtime))}")
    print(f"TLS_FILES={shlex.quote(' '.join(TLS_NAMES[k] for k in targets))}")
    print(f"WARNINGS={shlex.quote(chr(10).join(warnings))}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Refused as exc:
        print(f"flash.sh: error: {exc}", file=sys.stderr)
        sys.exit(2)
