"""Remote commands: `<prefix>/<id>/cmd/<verb>` in, `.../cmd/<verb>/reply` out (and the MQTT 5
response topic with its correlation data).

Every request is checked (size, JSON, schema, model path) and handed to the service's handler
`(verb, payload) -> dict` on a worker thread, so a slow swap or bench never blocks the MQTT
network thread. Every failure becomes `{"ok": false, "error": "..."}`, never an exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.errors import LookoutError
from app.telemetry.schemas import SchemaError, command_kind, validate
from app.telemetry.topics import VERBS, Topics, parse

log = logging.getLogger("lookout.telemetry.commands")

MAX_PAYLOAD_BYTES = 64 * 1024
Handler = Callable[[str, dict], dict]
ReplyFn = Callable[[str, dict, "str | None", "bytes | None"], None]


class CommandError(LookoutError):
    """A command request is invalid (one line, sent back as the reply's error)."""


def check_model_path(model: str, models_dir: Path | None) -> None:
    """A model is a name in the models directory or a path inside it; anything else is refused."""
    pathlike = "/" in model or "\\" in model or model.startswith(".") or model.startswith("~")
    if not pathlike:
        return
    if models_dir is None:
        raise CommandError(f"model {model!r}: paths are not accepted (give a model name)")
    root = Path(models_dir).resolve()
    target = (root / model).resolve()  # an absolute `model` replaces root here
    if not target.is_relative_to(root):
        raise CommandError(f"model {model!r} is outside the models directory {root}")


class CommandRouter:
    """Validates command requests and runs the handler on one worker thread, in arrival order."""

    def __init__(
        self,
        topics: Topics,
        handler: Handler | None,
        reply: ReplyFn,
        *,
        models_dir: Path | None = None,
        queue_size: int = 16,
    ) -> None:
        self.topics = topics
        self.handler = handler
        self.reply = reply
        self.models_dir = models_dir
        self._q: queue.Queue[tuple[str, bytes, str | None, bytes | None] | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self.handled = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._work, name=f"mqtt-cmd-{self.topics.device_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._q.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)

    def submit(
        self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> None:
        """Called on the network thread: cheap checks, then queue for the worker. Never raises."""
        parsed = parse(topic, self.topics.prefix)
        if parsed is None or parsed.kind != "cmd" or parsed.device_id != self.topics.device_id:
            return
        verb = parsed.verb or ""
        if response_topic is not None and (
            "+" in response_topic or "#" in response_topic or not response_topic
        ):
            response_topic = None  # not a valid topic to publish to
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._send(
                verb,
                _error(verb, f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"),
                response_topic,
                correlation,
            )
            return
        try:
            self._q.put_nowait((verb, payload, response_topic, correlation))
        except queue.Full:
            self._send(
                verb, _error(verb, "busy: too many commands queued; retry later"), response_topic, correlation
            )

    def process(self, verb: str, raw: bytes) -> dict[str, Any]:
        """Check one request and run the handler: the reply dict (ok true or false)."""
        req_id = None
        try:
            if len(raw) > MAX_PAYLOAD_BYTES:
                raise CommandError(f"payload of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
            if verb not in VERBS:
                raise CommandError(f"unknown command {verb!r}; expected one of {', '.join(VERBS)}")
            try:
                payload = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError(f"payload is not valid UTF-8 JSON: {exc}") from None
            if isinstance(payload, dict) and isinstance(payload.get("id"), str):
                req_id = payload["id"]
            try:
                validate(command_kind(verb), payload)
            except SchemaError as exc:
                raise CommandError(str(exc)) from None
            if verb == "swap":
                check_model_path(payload["model"], self.models_dir)
            if self.handler is None:
                raise CommandError("this process does not handle commands")
            args = {k: v for k, v in payload.items() if k != "id"}
            result = self.handler(verb, args)
            if not isinstance(result, dict):
                raise CommandError(f"handler for {verb!r} returned {type(result).__name__}, not a dict")
            reply = {"ok": True, **result, "verb": verb, "ts": time.time()}
            if reply["ok"] is False and not reply.get("error"):
                reply["error"] = "failed (no reason given)"
            if reply["ok"] is not False:
                reply.pop("error", None)
        except LookoutError as exc:
            reply = _error(verb, str(exc))
        except Exception as exc:  # a handler bug must not kill the worker
            log.exception("command %s failed", verb)
            reply = _error(verb, f"{type(exc).__name__}: {exc}".splitlines()[0])
        if req_id is not None:
            reply["id"] = req_id
        try:
            validate("cmd_reply", reply)
        except SchemaError as exc:
            reply = _error(verb, f"handler reply invalid: {exc}")
        return reply

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            verb, raw, response_topic, correlation = item
            self._send(verb, self.process(verb, raw), response_topic, correlation)
            self.handled += 1

    def _send(
        self, verb: str, reply: dict[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        try:
            self.reply(verb, reply, response_topic, correlation)
        except Exception:
            log.exception("cannot send the reply to %s", verb)


def _error(verb: str, message: str) -> dict[str, Any]:
    return {"ok": False, "verb": verb, "error": message.replace("\n", " "), "ts": time.time()}
