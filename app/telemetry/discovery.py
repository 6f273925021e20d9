"""Home Assistant MQTT discovery: one HA device per Lookout device, sensors for fps, p90 inference
latency, power and temperature from the metrics topic, and a connectivity binary sensor from the
status topic. Published retained on connect and whenever `homeassistant/status` says `online`.
"""

from __future__ import annotations

import re
from typing import Any

from app.telemetry.topics import Topics

HA_PREFIX = "homeassistant"
HA_STATUS_TOPIC = f"{HA_PREFIX}/status"
_UP = "{{ 'online' if value_json.state in ('online', 'degraded') else 'offline' }}"


def node_id(device_id: str) -> str:
    """HA node ids allow [A-Za-z0-9_-]; other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def configs(topics: Topics, version: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload for every entity of this device."""
    node = node_id(topics.device_id)
    device = {
        "identifiers": [f"lookout_{node}"],
        "name": f"Lookout {topics.device_id}",
        "manufacturer": "Lookout",
        "model": "Lookout edge inference camera",
        "sw_version": version,
    }
    availability = {"availability": [{"topic": topics.status, "value_template": _UP}]}
    sensors = {
        "fps": ("Frames per second", "{{ value_json.fps }}", "fps", None),
        "infer_p90_ms": (
            "Inference latency p90",
            "{{ (value_json.latency_ms.get('infer') or {}).get('p90') }}",
            "ms",
            "duration",
        ),
        "power_w": ("Power", "{{ value_json.power_w }}", "W", "power"),
        "temp_c": ("Temperature", "{{ value_json.temp_c }}", "°C", "temperature"),
    }
    out: dict[str, dict[str, Any]] = {}
    for obj, (name, template, unit, device_class) in sensors.items():
        cfg: dict[str, Any] = {
            "name": name,
            "unique_id": f"lookout_{node}_{obj}",
            "state_topic": topics.metrics,
            "value_template": template,
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "device": device,
            "origin": {"name": "lookout", "sw_version": version},
            **availability,
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
        "device": device,
        "origin": {"name": "lookout", "sw_version": version},
    }
    return out
