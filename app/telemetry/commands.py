"""Remote commands: `<prefix>/<id>/cmd/<verb>` in, `.../cmd/<verb>/reply` out (and the MQTT 5
response topic with its correlation data, when it lies under that reply topic).

Every request is checked (size, JSON, contract, model name) and the fields its contract model validated
are handed to the service's handler `(verb, args) -> dict` on a worker thread, so a slow swap or bench
never blocks the MQTT network thread. Every failure becomes `{"ok": false, "error": "..."}`, never an exception.
A retained command never runs: it would run again at every restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import ArtifactError, LookoutError
from app.telemetry.contract import build
from app.telemetry.schemas import SchemaError, command_kind, validate
from app.telemetry.topics import VERBS, Topics, parse
from app.zoo import check_model_name

log = logging.getLogger("lookout.telemetry.commands")

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_TOPIC_BYTES = 1024
RETAINED_REFUSAL = (
    "retained command ignored: commands must not be retained (a retained command would run again at "
    "every restart); clear it by publishing an empty retained message to its topic"
)
Handler = Callable[[str, dict], dict]
ReplyFn = Callable[[str, dict, "str | None", "bytes | None"], None]


class CommandError(LookoutError):
    """A command request is invalid (one line, sent back as the reply's error)."""


def check_model(model: str) -> None:
    """A command names a model by name only (a folder of the models directory): never a path."""
    try:
        check_model_name(model)
    except ArtifactError as exc:
        raise CommandError(str(exc)) from None


def response_topic_refusal(topics: Topics, verb: str, topic: str) -> str | None:
    """None when an MQTT 5 Response Topic may carry the reply to a `verb` request, else why not.

    Allowed: the request's own reply topic `<prefix>/<id>/cmd/<verb>/reply` or a topic under it
    (`.../reply/<anything>`). Anything else (the device's data topics, its command topics, Home Assistant
    discovery, another device) lies inside what the device may write, so no ACL would stop it."""
    own = topics.cmd_reply(verb)
    if not topic or any(c in topic for c in "+#\x00") or len(topic.encode()) > MAX_TOPIC_BYTES:
        return "not a topic a reply can be published to"
    if topic != own and not topic.startswith(own + "/"):
        return f"replies go only to {own} or a topic under it"
    return None


def command_args(verb: str, payload: Any) -> dict[str, Any]:
    """The handler's arguments: the fields the request set, as its contract model validated them
    (typed; no `v`, no `id`), or CommandError (one line)."""
    try:
        command = build(command_kind(verb), payload)
    except SchemaError as exc:
        raise CommandError(str(exc)) from None
    return command.model_dump(exclude={"v", "id"}, exclude_unset=True)


class CommandRouter:
    """Validates command requests and runs the handler on one worker thread, in arrival order."""

    def __init__(
        self,
        topics: Topics,
        handler: Handler | None,
        reply: ReplyFn,
        *,
        queue_size: int = 16,
    ) -> None:
        self.topics = topics
        self.handler = handler
        self.reply = reply
        self._q: queue.Queue[_Request | None] = queue.Queue(queue_size)
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
        self,
        topic: str,
        payload: bytes,
        response_topic: str | None,
        correlation: bytes | None,
        *,
        retained: bool = False,
    ) -> None:
        """Called on the network thread: cheap checks, then queue for the worker. Never raises."""
        parsed = parse(topic, self.topics.prefix)
        if parsed is None or parsed.kind != "cmd" or parsed.device_id != self.topics.device_id:
            return
        verb = parsed.verb or ""
        refused = None
        if response_topic is not None:
            refused = response_topic_refusal(self.topics, verb, response_topic)
            if refused:
                log.warning("command %s: response topic %r refused (%s)", verb, response_topic[:200], refused)
                response_topic = None
        if retained:
            log.warning("command %s: %s", topic, RETAINED_REFUSAL)
        req = _Request(verb, payload, response_topic, correlation, refused, retained)
        if len(payload) > MAX_PAYLOAD_BYTES:
            msg = f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
            self._send(req, _error(verb, msg))
            return
        try:
            self._q.put_nowait(req)
        except queue.Full:
            self._send(req, _error(verb, "busy: too many commands queued; retry later"))

    def process(self, verb: str, raw: bytes, *, retained: bool = False) -> dict[str, Any]:
        """Check one request and run the handler: the reply dict (ok true or false). A retained
        request is refused (after reading its id, so the reply can be matched)."""
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
            except RecursionError:
                raise CommandError("payload is not valid JSON here: nested too deeply") from None
            if isinstance(payload, dict) and isinstance(payload.get("id"), str):
                req_id = payload["id"]
            if retained:
                raise CommandError(RETAINED_REFUSAL)
            args = command_args(verb, payload)
            if verb == "swap":
                check_model(args["model"])
            if self.handler is None:
                raise CommandError("this process does not handle commands")
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
            req = self._q.get()
            if req is None:
                return
            self._send(req, self.process(req.verb, req.payload, retained=req.retained))
            self.handled += 1

    def _send(self, req: _Request, reply: dict[str, Any]) -> None:
        if req.refused:
            reply["response_topic_refused"] = req.refused
        try:
            self.reply(req.verb, reply, req.response_topic, req.correlation)
        except Exception:
            log.exception("cannot send the reply to %s", req.verb)


@dataclass(frozen=True, slots=True)
class _Request:
    verb: str
    payload: bytes
    response_topic: str | None  # None when absent or refused
    correlation: bytes | None
    refused: str | None  # why the requested response topic was refused
    retained: bool


def _error(verb: str, message: str) -> dict[str, Any]:
    return {"ok": False, "verb": verb, "error": message.replace("\n", " "), "ts": time.time()}
