"""`cmd/config` on the real Controller over a real Engine (the zoo's blazeface-short on tflite): what the
contract refuses never reaches it, a refused command changes nothing, an accepted one changes exactly what
it names, and the running config keeps its secrets.

The command router is the real CommandRouter; the pipeline is a real Pipeline (not started: a config
command only touches its engine).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.config import validate_config
from app.controller import Controller
from app.engine import engine_for
from app.errors import LookoutError
from app.hostroots import HostRoots
from app.measure.latency import StageHistograms
from app.pipeline import STAGES, Pipeline
from app.status import DeviceStatus
from app.telemetry.commands import CommandRouter
from app.telemetry.schemas import validate
from app.telemetry.topics import Topics
from app.vision.sources import open_source

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def controller(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    state = tmp_path_factory.mktemp("state")
    cfg = validate_config(
        {
            "model": "blazeface-short",
            "models_dir": str(models_dir),
            "state_dir": str(state),
            "runtime": {"type": "tflite", "threads": 1},
            "source": {"type": "synthetic"},
            "pipeline": {"warmup": 1},
            "mqtt": {"username": "cam-1", "password": PASSWORD},
        },
        "test",
    )
    roots = HostRoots.from_env()
    engine = engine_for(cfg, roots, cfg.pipeline.score_threshold)
    source = open_source(cfg.source, cfg.reconnect)
    pipeline = Pipeline(source, engine, lambda _r: None, StageHistograms(STAGES), live=False)
    yield Controller(cfg, pipeline, DeviceStatus(started_at=0.0), roots)
    engine.close()


def state(c: Controller) -> dict[str, Any]:
    """Everything a config command may change, compared by value (a SecretStr compares its secret)."""
    return {
        "cfg": c.cfg.model_dump(),
        "settings": dataclasses.asdict(c.settings),
        "engine_threshold": c.pipeline.engine.score_threshold,
    }


def router(c: Controller) -> CommandRouter:
    return CommandRouter(Topics(c.cfg.device_id), c.handle, lambda *a: None)


def test_an_explicit_null_is_refused_in_one_line_and_changes_nothing(
    controller: Controller, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: publish_empty half-applied, then float(None) in the engine and a traceback."""
    before = copy.deepcopy(state(controller))
    with caplog.at_level(logging.WARNING):
        reply = router(controller).process("config", b'{"publish_empty": true, "score_threshold": null}')
    assert reply["ok"] is False and "\n" not in reply["error"]
    assert "'score_threshold' may be left out but not null" in reply["error"]
    validate("cmd_reply", reply)
    assert state(controller) == before
    assert not [r for r in caplog.records if r.exc_info]


def test_the_controller_applies_a_config_command_all_or_nothing(controller: Controller) -> None:
    """Called directly (no router in front), a value the running config refuses changes nothing."""
    before = copy.deepcopy(state(controller))
    flipped = not controller.settings.publish_empty
    for payload in (
        {"publish_empty": flipped, "score_threshold": None},
        {"publish_empty": flipped, "score_threshold": 7.0},
        {"publish_empty": flipped, "metrics_interval_s": -1.0},
        {"publish_empty": flipped, "source": {"type": "synthetic"}},
    ):
        with pytest.raises(LookoutError):
            controller.apply_config(payload)
        assert state(controller) == before, payload


def test_a_config_command_keeps_the_mqtt_password(controller: Controller) -> None:
    reply = router(controller).process("config", b'{"score_threshold": 0.55}')
    assert reply["ok"] is True and reply["applied"] == {"score_threshold": 0.55}
    assert controller.cfg.mqtt.password is not None
    assert controller.cfg.mqtt.password.get_secret_value() == PASSWORD
    assert controller.pipeline.engine.score_threshold == 0.55


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1),
    st.text(max_size=8),
)
valid_values = {
    "metrics_interval_s": st.floats(0.01, 86400),
    "publish_empty": st.booleans(),
    "score_threshold": st.floats(0, 1),
}
hostile = st.fixed_dictionaries(
    {},
    optional={
        **{k: st.one_of(scalars, v) for k, v in valid_values.items()},
        "id": st.one_of(st.text(max_size=8), scalars),
        "v": st.one_of(st.just(1), scalars),
        "extra": scalars,
    },
)
valid = st.fixed_dictionaries({}, optional={**valid_values, "id": st.text(max_size=8)})
config_payloads = st.one_of(valid, hostile)


@settings(max_examples=60, deadline=None)
@given(payload=config_payloads)
def test_any_config_command_on_the_real_controller(controller: Controller, payload: dict[str, Any]) -> None:
    """Every request gets a reply that fits the contract; a refused one changes nothing; an accepted one
    changes exactly the settings it names (running config, live settings and the engine's threshold)."""
    before = copy.deepcopy(state(controller))
    raw = json.dumps(payload).encode()  # NaN and Infinity as JSON parsers take them
    reply = router(controller).process("config", raw)
    validate("cmd_reply", reply)
    after = state(controller)
    event("applied" if reply["ok"] else "refused")
    if reply["ok"] is False:
        assert reply["error"] and "\n" not in reply["error"]
        assert after == before
        return
    keys = {k for k in payload if k not in ("id", "v")}
    assert set(reply["applied"]) == keys
    for key, value in reply["applied"].items():
        assert value == payload[key] and after["settings"][key] == value
    if "score_threshold" in keys:
        assert after["engine_threshold"] == payload["score_threshold"]
    for key in {"metrics_interval_s", "publish_empty", "score_threshold"} - keys:
        assert after["settings"][key] == before["settings"][key]
    assert controller.cfg.mqtt.password.get_secret_value() == PASSWORD
