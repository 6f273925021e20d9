"""Property-based: any command request through the real router gets a valid one-line reply, and only
requests the rules allow reach the handler (#15).

The router is the real CommandRouter (size limit, JSON, schema, model names, retained flag, response
topics); the handler records what reaches it (test_config_command.py fuzzes the real Controller behind
it). Any payload: arbitrary bytes, arbitrary JSON, and JSON objects built from the real command fields
with hostile values (NaN, paths, control characters).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.telemetry.commands import CommandRouter
from app.telemetry.schemas import validate
from app.telemetry.topics import VERBS, Topics
from app.zoo import MODEL_NAME

SETTINGS = settings(max_examples=150, deadline=None)
TOPICS = Topics("cam-1")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
model_names = st.one_of(
    st.sampled_from(["blazeface-short", "../evil", "./evil", "evil/model.toml", "/etc/passwd", ".", "..",
                     "tmp/x/evil/model.toml", "a\\b", "~root", "blazeface-short/../x", "x" * 300, "m\x1b]0;t\x07"]),
    st.text(max_size=40),
)  # fmt: skip
fields = {
    "model": model_names,
    "runtime": st.one_of(st.sampled_from(["tflite", "executorch", "TFLite!", ""]), st.text(max_size=10)),
    "runtimes": st.one_of(
        st.lists(st.sampled_from(["tflite", "onnxruntime", "x y"]), max_size=3), json_values
    ),
    "frames": st.one_of(st.integers(), json_scalars),
    "metrics_interval_s": json_scalars,
    "publish_empty": json_scalars,
    "score_threshold": json_scalars,
    "id": st.one_of(st.text(max_size=20), json_scalars),
}
command_objects = st.fixed_dictionaries({}, optional={**fields, "extra": json_values})
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    command_objects.map(lambda v: json.dumps(v).encode()),
)
verbs = st.one_of(st.sampled_from(VERBS), st.sampled_from(["reboot", "x", "cmd"]))


class Handler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, verb: str, payload: dict) -> dict[str, Any]:
        self.calls.append((verb, payload))
        return {"applied": sorted(payload)}


@SETTINGS
@given(verb=verbs, raw=payloads, retained=st.booleans())
def test_any_request_gets_a_valid_reply_and_only_valid_ones_run(
    verb: str, raw: bytes, retained: bool
) -> None:
    handler = Handler()
    router = CommandRouter(TOPICS, handler, lambda *a: None)
    reply = router.process(verb, raw, retained=retained)
    validate("cmd_reply", reply)
    json.dumps(reply, allow_nan=True)
    if reply["ok"] is False:
        assert reply["error"] and "\n" not in reply["error"] and not handler.calls
        return
    assert not retained and verb in VERBS and len(handler.calls) == 1
    payload = json.loads(raw)
    validate(f"cmd_{verb}", payload)  # the same contract the router applied
    assert handler.calls[0][1] == {k: v for k, v in payload.items() if k not in ("id", "v")}
    if verb == "swap":
        model = handler.calls[0][1]["model"]
        assert MODEL_NAME.match(model) and ".." not in model and "/" not in model


response_topics = st.one_of(
    st.sampled_from(["lookout/cam-1/cmd/swap/reply", "lookout/cam-1/cmd/swap/reply/me", "lookout/cam-1/detections",
                     "lookout/cam-1/status", "lookout/cam-1/cmd/swap", "lookout/cam-1/cmd/config/reply",
                     "homeassistant/sensor/cam-1/fps/config", "lookout/cam-1/cmd/swap/reply/+", "#", "",
                     "lookout/cam-1/cmd/swap/replyx"]),
    st.text(max_size=60),
)  # fmt: skip


@SETTINGS
@given(rt=response_topics, verb=st.sampled_from(VERBS), retained=st.booleans())
def test_replies_go_only_to_the_reply_topic_or_under_it(rt: str, verb: str, retained: bool) -> None:
    sent: list[tuple[str, dict, str | None, bytes | None]] = []
    done = threading.Event()

    def reply(v: str, r: dict, topic: str | None, corr: bytes | None) -> None:
        sent.append((v, r, topic, corr))
        done.set()

    handler = Handler()
    router = CommandRouter(TOPICS, handler, reply)
    router.start()
    try:
        router.submit(TOPICS.cmd(verb), b'{"publish_empty": true}', rt, b"c", retained=retained)
        assert done.wait(10)
    finally:
        router.stop()
    [(v, r, topic, corr)] = sent
    assert v == verb and corr == b"c"
    own = TOPICS.cmd_reply(verb)
    assert (
        topic is None or topic == own or (topic.startswith(own + "/") and not re.search(r"[+#\x00]", topic))
    )
    assert (topic is None) == ("response_topic_refused" in r)
    if retained:
        assert not handler.calls and r["ok"] is False and "retained" in r["error"]
