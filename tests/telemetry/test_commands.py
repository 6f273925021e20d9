"""Command checking and dispatch (CommandRouter.process), with a real recording handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import ArtifactError
from app.telemetry.commands import MAX_PAYLOAD_BYTES, CommandRouter
from app.telemetry.schemas import validate
from app.telemetry.topics import Topics


class Recorder:
    """The service side: records calls; swap to 'corrupt' fails like a bad artifact would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, verb: str, payload: dict) -> dict:
        self.calls.append((verb, payload))
        if verb == "swap" and payload["model"] == "corrupt":
            raise ArtifactError("models/corrupt/model.tflite: sha256 mismatch")
        if verb == "swap" and payload["model"] == "buggy":
            raise KeyError("oops")
        if verb == "swap":
            to = {"model": payload["model"], "runtime": payload["runtime"]}
            return {"from": {"model": "blazeface-short", "runtime": "tflite"}, "to": to, "load_s": 0.1}
        return {}


@pytest.fixture
def router(models_dir: Path) -> tuple[CommandRouter, Recorder]:
    rec = Recorder()
    return CommandRouter(Topics("cam-1"), rec, lambda *a: None), rec


def _req(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_swap_reaches_the_handler(router: tuple[CommandRouter, Recorder]) -> None:
    r, rec = router
    reply = r.process("swap", _req({"model": "blazeface-short", "runtime": "executorch", "id": "42"}))
    validate("cmd_reply", reply)
    assert reply["ok"] is True and reply["id"] == "42" and reply["to"]["runtime"] == "executorch"
    assert rec.calls == [("swap", {"model": "blazeface-short", "runtime": "executorch"})]


def test_config_and_bench_reach_the_handler(router: tuple[CommandRouter, Recorder]) -> None:
    r, rec = router
    assert r.process("config", _req({"score_threshold": 0.7, "publish_empty": True}))["ok"] is True
    assert r.process("bench", _req({"runtimes": ["tflite"], "frames": 50}))["ok"] is True
    assert rec.calls == [
        ("config", {"score_threshold": 0.7, "publish_empty": True}),
        ("bench", {"runtimes": ["tflite"], "frames": 50}),
    ]


@pytest.mark.parametrize(
    ("verb", "raw", "error"),
    [
        ("reboot", b"{}", "unknown command 'reboot'"),
        ("swap", b"{not json", "not valid UTF-8 JSON"),
        ("swap", b"\xff\xfe", "not valid UTF-8 JSON"),
        ("swap", b"[1, 2]", "cmd_swap payload (root)"),
        ("swap", _req({"model": "blazeface-short"}), "'runtime' is a required property"),
        ("swap", _req({"model": "../../etc/passwd", "runtime": "tflite"}), "no paths"),
        ("swap", _req({"model": "/etc/passwd", "runtime": "tflite"}), "no paths"),
        ("swap", _req({"model": "tmp/x/evil/model.toml", "runtime": "tflite"}), "no paths"),
        ("swap", _req({"model": "./evil", "runtime": "tflite"}), "no paths"),
        ("swap", _req({"model": "blazeface-short/../blazeface-short", "runtime": "tflite"}), "no paths"),
        ("swap", _req({"model": "blazeface-short", "runtime": "TFLite!"}), "runtime"),
        ("swap", _req({"model": "corrupt", "runtime": "tflite"}), "sha256 mismatch"),
        ("swap", _req({"model": "buggy", "runtime": "tflite"}), "KeyError"),
        ("bench", _req({"runtimes": "tflite"}), "runtimes"),
        ("config", _req({"score_threshold": -1}), "score_threshold"),
        ("config", _req({"threads": 4}), "threads"),
        ("swap", b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds the 65536-byte limit"),
        ("config", b"[" * 60000, "nested too deeply"),
    ],
)
def test_bad_requests_get_an_error_reply(
    router: tuple[CommandRouter, Recorder], verb: str, raw: bytes, error: str
) -> None:
    r, rec = router
    reply = r.process(verb, raw)
    validate("cmd_reply", reply)
    assert reply["ok"] is False and error in reply["error"] and "\n" not in reply["error"]
    handler_ran = any(m in error for m in ("sha256", "KeyError"))
    assert bool(rec.calls) == handler_ran


def test_without_a_handler_commands_are_refused() -> None:
    r = CommandRouter(Topics("cam-1"), None, lambda *a: None)
    reply = r.process("config", _req({"publish_empty": True}))
    assert reply == reply | {"ok": False, "error": "this process does not handle commands"}


def test_handler_returning_garbage_is_an_error(models_dir: Path) -> None:
    r = CommandRouter(Topics("cam-1"), lambda v, p: ["not", "a", "dict"], lambda *a: None)  # type: ignore[arg-type,return-value]
    reply = r.process("config", _req({"publish_empty": False}))
    assert reply["ok"] is False and "not a dict" in reply["error"]
