"""Home Assistant MQTT discovery: one HA device per Lookout device.

Entities: sensors for fps, p90 inference latency, power and temperature (metrics topic); a connectivity
binary sensor (status topic); with events on, per tracked label an `occupancy` binary sensor and a count
sensor (the retained presence topic), and with snapshots on a camera showing the latest event snapshot
(snapshot topic, raw JPEG).
Published retained on connect, whenever `homeassistant/status` says `online`, and when the tracked labels
change (entities of labels no longer tracked are removed with an empty retained config). The topics
published are saved in the state dir, so a later run removes the entities it no longer makes (labels
changed in the config, or Home Assistant turned off) even across a restart.

Availability: every entity but connectivity is available only while the status says online/degraded.
A metrics sensor is also unavailable while its value is null (not measured: no power meter, no
temperature sensor) — availability_mode "all" over the status and metrics topics — and its value
template renders nothing rather than the string "None" for a null, so Home Assistant never shows "None".
Templates are plain Jinja (HA's template language); tests render them with jinja2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.telemetry.topics import Topics

log = logging.getLogger(__name__)

HA_PREFIX = "homeassistant"
HA_STATUS_TOPIC = f"{HA_PREFIX}/status"
MAX_LABELS = 100  # per-label entities beyond this flood HA: set [events] labels for such models
_UP = "{{ 'online' if value_json.state in ('online', 'degraded') else 'offline' }}"


def node_id(device_id: str) -> str:
    """HA node ids allow [A-Za-z0-9_-]; other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def object_id(label: str) -> str:
    """A label as an HA object id: [A-Za-z0-9_-]; a short hash keeps sanitised labels apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", label)[:48]
    if safe != label:
        safe += "_" + hashlib.sha256(label.encode()).hexdigest()[:6]
    return safe


def _jinja_str(text: str) -> str:
    """`text` as a Jinja string literal (quotes, backslashes and non-ASCII escaped)."""
    return json.dumps(text, ensure_ascii=True)


def _number_or_nothing(expr: str) -> str:
    """A value template rendering `expr` when it is a number and nothing otherwise (never "None")."""
    return f"{{% set x = {expr} %}}{{{{ x if x is number else '' }}}}"


def _measured(expr: str) -> str:
    """An availability template: online while `expr` is a number."""
    return f"{{{{ 'online' if ({expr}) is number else 'offline' }}}}"


def configs(
    topics: Topics, version: str, labels: Sequence[str] = (), *, camera: bool = False
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every entity of this device (`labels`: tracked labels;
    `camera`: snapshots are published)."""
    node = node_id(topics.device_id)
    common = {
        "device": {
            "identifiers": [f"lookout_{node}"],
            "name": f"Lookout {topics.device_id}",
            "manufacturer": "Lookout",
            "model": "Lookout edge inference camera",
            "sw_version": version,
        },
        "origin": {"name": "lookout", "sw_version": version},
    }
    device_up = {"topic": topics.status, "value_template": _UP}
    out: dict[str, dict[str, Any]] = {}
    metrics = {
        "fps": ("Frames per second", "value_json.fps", "fps", None),
        "infer_p90_ms": (
            "Inference latency p90",
            "(value_json.latency_ms.get('infer') or {}).get('p90')",
            "ms",
            "duration",
        ),
        "power_w": ("Power", "value_json.power_w", "W", "power"),
        "temp_c": ("Temperature", "value_json.temp_c", "°C", "temperature"),
    }
    for obj, (name, expr, unit, device_class) in metrics.items():
        cfg: dict[str, Any] = {
            "name": name,
            "unique_id": f"lookout_{node}_{obj}",
            "state_topic": topics.metrics,
            "value_template": _number_or_nothing(expr),
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "availability": [device_up, {"topic": topics.metrics, "value_template": _measured(expr)}],
            "availability_mode": "all",
            **common,
        }
        if device_class:
            cfg["device_class"] = device_class
        out[f"{HA_PREFIX}/sensor/{node}/{obj}/config"] = cfg
    # The connectivity sensor is itself the availability signal, so it has none: when the device is
    # offline it reads "off" instead of "unavailable".
    out[f"{HA_PREFIX}/binary_sensor/{node}/connectivity/config"] = {
        "name": "Connectivity",
        "unique_id": f"lookout_{node}_connectivity",
        "state_topic": topics.status,
        "value_template": "{{ 'ON' if value_json.state in ('online', 'degraded') else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        **common,
    }
    if len(labels) > MAX_LABELS:
        log.warning(
            "Home Assistant: %d labels tracked; entities only for the first %d (set [events] labels)",
            len(labels),
            MAX_LABELS,
        )
    for label in list(labels)[:MAX_LABELS]:
        obj, lit = object_id(label), _jinja_str(label)
        out[f"{HA_PREFIX}/binary_sensor/{node}/presence_{obj}/config"] = {
            "name": f"{label} occupancy",
            "unique_id": f"lookout_{node}_presence_{obj}",
            "state_topic": topics.presence,
            "value_template": f"{{{{ 'ON' if {lit} in value_json.present else 'OFF' }}}}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "occupancy",
            "availability": [device_up],
            **common,
        }
        out[f"{HA_PREFIX}/sensor/{node}/count_{obj}/config"] = {
            "name": f"{label} count",
            "unique_id": f"lookout_{node}_count_{obj}",
            "state_topic": topics.presence,
            "value_template": (
                f"{{{{ value_json.present[{lit}].count if {lit} in value_json.present else 0 }}}}"
            ),
            "state_class": "measurement",
            "availability": [device_up],
            **common,
        }
    if camera:
        out[f"{HA_PREFIX}/camera/{node}/snapshot/config"] = {
            "name": "Event snapshot",
            "unique_id": f"lookout_{node}_snapshot",
            "topic": topics.snapshot,  # raw JPEG bytes: no image_encoding
            "availability": [device_up],
            **common,
        }
    return out


def _own_topic(topics: Topics) -> re.Pattern[str]:
    node = re.escape(node_id(topics.device_id))
    return re.compile(rf"{HA_PREFIX}/(?:sensor|binary_sensor|camera)/{node}/[A-Za-z0-9_-]+/config")


def read_published(path: Path, topics: Topics) -> set[str]:
    """The discovery topics an earlier run published (saved in `path`), so that entities it made and this
    run does not (labels no longer tracked, Home Assistant turned off) can be removed. Only this device's
    own discovery topics count; a missing or unreadable file is an empty set."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    own = _own_topic(topics)
    return {t for t in saved if isinstance(t, str) and own.fullmatch(t)} if isinstance(saved, list) else set()


def write_published(path: Path, published: set[str]) -> None:
    """Save the discovery topics now published (atomically); a failure (a full disk) is only logged: the
    worst case is an entity the next run cannot remove by itself."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(sorted(published)))
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot save the Home Assistant entities in %s: %s", path, exc.strerror or exc)
        tmp.unlink(missing_ok=True)
