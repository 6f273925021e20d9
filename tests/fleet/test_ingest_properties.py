"""Property-based tests: any message from the network into the fleet monitor's real ingest path (Monitor.handle
-> schema checks -> Registry, with a real SQLite history store; and once through a real mosquitto) is either
applied or counted as malformed. Nothing raises, nothing is logged as a bug, and no valid message is lost.
(issue #15: "device messages into the fleet").
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.fleet.monitor import KINDS, Monitor
from app.fleet.registry import Registry
from app.fleet.store import Store
from app.telemetry import contract
from app.telemetry.broker import Broker, start_broker

COUNTER = {
    "status": "n_status",
    "metrics": "n_metrics",
    "detections": "n_detections",
    "bench": "n_bench",
    "events": "n_events",
    "presence": "n_presence",
    "snapshot": "n_snapshots",
}

# --- strategies ------------------------------------------------------------------------------------
ids = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
any_text = st.text(max_size=40)  # any code point: control characters, markup, lone surrogates
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
nonneg = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
maybe_nonneg = st.none() | nonneg
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

status = st.one_of(
    st.just({"v": 1, "state": "offline"}),  # the will
    st.fixed_dictionaries(
        {
            "v": st.just(1),
            "state": st.sampled_from(["online", "degraded", "stopped"]),
            "version": any_text,
            "runtime": st.none() | any_text,
            "model": st.none() | any_text,
            "fallback": st.none()
            | st.fixed_dictionaries({"from": any_text, "to": any_text, "reason": any_text}),
            "board": st.none() | any_text,
            "started_at": finite,
            "ts": finite,
        },
        optional={
            "reason": any_text,
            "spool_depth": st.integers(0, 10**9),
            "spool_dropped": st.integers(0, 10**9),
            "spool_drop_reasons": st.dictionaries(any_text, st.integers(0, 10**9), max_size=3),
        },
    ),
)
percentiles = st.fixed_dictionaries({"p50": maybe_nonneg, "p90": maybe_nonneg, "p99": maybe_nonneg})
throttling = st.integers(0, 0xFFFFFFFF).map(lambda r: contract.Throttling.from_register(r).model_dump())
metrics = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "ts": finite,
        "fps": maybe_nonneg,
        "latency_ms": st.dictionaries(any_text, percentiles, max_size=4),
        "power_w": maybe_nonneg,
        "power_source": st.text(min_size=1, max_size=30),
        "energy_mj_per_inference": maybe_nonneg,
        "temp_c": st.none() | finite,
        "temps": st.dictionaries(any_text, finite, max_size=3),
        "cpu_percent": maybe_nonneg,
        "rss_mb": maybe_nonneg,
        "dropped_frames": st.none() | st.integers(0, 10**9),
        "spool_depth": st.integers(0, 10**9),
        "spool_dropped": st.integers(0, 10**9),
        "runtime": any_text,
        "model": any_text,
        "throttled": st.none() | throttling,
        "reasons": st.dictionaries(any_text, any_text, max_size=3),
    },
    optional={"spool_drop_reasons": st.dictionaries(any_text, st.integers(0, 10**9), max_size=3)},
)
detection = st.fixed_dictionaries(
    {
        "label": st.text(min_size=1, max_size=20),
        "score": st.floats(0, 1),
        "box": st.lists(finite, min_size=4, max_size=4),
    }
)
detections = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "seq": st.integers(1, 2**53),
        "ts": finite,
        "frame": st.integers(0, 2**53),
        "model": any_text,
        "runtime": any_text,
        "detections": st.lists(detection, max_size=5),
        "latency_ms": st.dictionaries(any_text, nonneg, max_size=5),
    }
)
bench = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "model": any_text,
        "host": st.fixed_dictionaries(
            {}, optional={"cpu": any_text, "cores": st.integers(0, 512), "os": any_text}
        ),
        "results": st.lists(
            st.fixed_dictionaries({"runtime": any_text}, optional={"throughput_fps": st.none() | nonneg}),
            max_size=3,
        ),
        "ts": finite,
    }
)
score = st.floats(0, 1)
events = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "seq": st.integers(1, 2**53),
        "type": st.sampled_from(["start", "update", "end"]),
        "label": st.text(min_size=1, max_size=20),
        "count": st.integers(0, 10**6),
        "max_score": score,
        "started_at": finite,
        "ts": finite,
        "snapshot": st.booleans(),
    }
)
presence = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "ts": finite,
        "present": st.dictionaries(
            any_text,
            st.fixed_dictionaries({"count": st.integers(0, 10**6), "max_score": score, "started_at": finite}),
            max_size=3,
        ),
    }
)
jpeg = st.binary(max_size=100).map(lambda b: b"\xff\xd8\xff" + b)  # the monitor checks the JPEG magic only
VALID = {
    "status": status,
    "metrics": metrics,
    "detections": detections,
    "bench": bench,
    "events": events,
    "presence": presence,
}


@st.composite
def valid_message(draw: st.DrawFn, device: st.SearchStrategy[str] = ids) -> tuple[str, bytes, str, dict]:
    kind = draw(st.sampled_from(KINDS))
    if kind == "snapshot":  # a bare JPEG, the one payload outside the JSON contract
        return f"lookout/{draw(device)}/{kind}", draw(jpeg), kind, {}
    payload = draw(VALID[kind])
    contract.parse(kind, payload)  # the strategies build what the contract says (raises otherwise)
    return f"lookout/{draw(device)}/{kind}", json.dumps(payload).encode(), kind, payload


def _nonfinite(payload: dict) -> bytes:
    """Valid JSON shape with a NaN/Infinity literal (not JSON) or 1e999 (a finite-looking overflow)."""
    text = json.dumps(payload)
    return (
        text.replace("1", "NaN", 1).encode()
        if "1" in text
        else text.replace("{", '{"x": Infinity,', 1).encode()
    )


def _valid_as_any_kind(raw: bytes) -> bool:
    """True when `raw` happens to be a valid payload of some kind (e.g. NaN landed inside a string)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    for kind in KINDS:
        try:
            contract.parse(kind, data)
        except Exception:  # ContractError, UnsupportedVersion: not this kind
            continue
        return True
    return False


garbage_payload = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["seq", "ts", "state", "fps", "detections", "results"]), json_values).map(
        lambda d: json.dumps(d).encode()
    ),
    st.sampled_from([b"NaN", b"[" * 5000, b'{"a":' * 3000, b"\xef\xbb\xbf{}", b"1e999", b'{"ts": 1e999}']),
    st.builds(lambda kind, p: _nonfinite(p), st.sampled_from(KINDS), st.one_of(*VALID.values())),
).filter(lambda raw: not _valid_as_any_kind(raw))  # garbage: never a payload the contract accepts
garbage_topic = st.one_of(
    st.builds(lambda d, k: f"lookout/{d}/{k}", any_text, st.sampled_from([*KINDS, "cmd/swap", "x", ""])),
    st.text(max_size=60),
)


@st.composite
def garbage_message(draw: st.DrawFn) -> tuple[str, bytes, None, None]:
    topic = draw(
        st.one_of(garbage_topic, st.builds(lambda d, k: f"lookout/{d}/{k}", ids, st.sampled_from(KINDS)))
    )
    return topic, draw(garbage_payload), None, None


messages = st.lists(st.one_of(valid_message(), garbage_message()), min_size=1, max_size=25)


# --- helpers ---------------------------------------------------------------------------------------
class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("fleet") / "history.db")
    try:
        yield s
    finally:
        s.close()


def _counter(reg: Registry, dev: str, kind: str) -> int:
    d = reg.devices.get(dev)
    return getattr(d, COUNTER[kind]) if d is not None else 0


def _refused(monitor: Monitor) -> int:
    """Messages counted as malformed or of an unsupported contract version."""
    return sum(monitor.stats.malformed.values()) + sum(monitor.stats.unsupported_version.values())


def check_ingest(monitor: Monitor, batch: list[tuple[str, bytes, str | None, dict | None]]) -> None:
    """Feed the batch; each message is applied (its device's counter +1) or counted as refused (+1)."""
    from app.telemetry import topics

    reg = monitor.registry
    expected: dict[tuple[str, str], int] = {}
    for topic, payload, kind, _ in batch:
        parsed = topics.parse(topic)
        key = (parsed.device_id, parsed.kind) if parsed and parsed.kind in COUNTER else None
        before_applied = _counter(reg, *key) if key else 0
        before_refused = _refused(monitor)
        monitor.handle(topic, payload, time.time())
        applied = (_counter(reg, *key) if key else 0) - before_applied
        malformed = _refused(monitor) - before_refused
        assert applied + malformed == 1, (topic, payload[:200], applied, malformed)
        if kind is not None:
            assert applied == 1, (
                f"a valid {kind} message was refused: {payload[:300]!r} {monitor.stats.malformed}"
            )
            expected[key] = expected.get(key, 0) + 1  # type: ignore[index]
    assert not any(k.startswith("error:") for k in monitor.stats.malformed), monitor.stats.malformed
    for (dev, kind), n in expected.items():
        assert _counter(reg, dev, kind) >= n


# --- properties ------------------------------------------------------------------------------------
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(batch=messages)
def test_any_message_is_applied_or_counted_never_raised(batch, store: Store) -> None:
    rec = Recorded()
    log = logging.getLogger()
    log.addHandler(rec)
    try:
        monitor = Monitor(Registry(), store=store)
        check_ingest(monitor, batch)
        monitor.flush_history()  # the history takes whatever the registry took
        rows = monitor.registry.snapshot()
        json.dumps(rows, default=str)  # the rows stay serialisable
        assert monitor.stats.history_errors == 0
    finally:
        log.removeHandler(rec)
    assert not [r for r in rec.records if r.exc_info], "a traceback was logged"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dev=ids,
    sequence=st.lists(
        st.one_of(detections, garbage_payload.map(lambda p: ("garbage", p))), min_size=1, max_size=30
    ),
)
def test_valid_detections_among_garbage_are_all_counted(dev: str, sequence: list[Any]) -> None:
    """Detections seqs, rates and gaps reflect exactly the valid messages, whatever came between them."""
    monitor = Monitor(Registry())
    seqs = []
    for item in sequence:
        if isinstance(item, tuple):
            monitor.handle(f"lookout/{dev}/detections", item[1], time.time())
        else:
            monitor.handle(f"lookout/{dev}/detections", json.dumps(item).encode(), time.time())
            seqs.append(item["seq"])
    d = monitor.registry.devices.get(dev)
    assert (d.n_detections if d else 0) == len(seqs)
    if seqs:
        assert d.seq.last == max(seqs)
        ordered = [s for i, s in enumerate(seqs) if s > max(seqs[:i], default=0)]
        gaps = sum(b - a - 1 for a, b in itertools.pairwise(ordered))
        assert d.seq.gaps == gaps and d.seq.dups == len(seqs) - len(ordered)


@settings(max_examples=100, deadline=None)
@given(dev=ids, states=st.lists(status, min_size=1, max_size=8), noise=st.lists(garbage_payload, max_size=8))
def test_the_last_valid_status_wins(dev: str, states: list[dict], noise: list[bytes]) -> None:
    monitor = Monitor(Registry())
    for i, s in enumerate(states):
        monitor.handle(f"lookout/{dev}/status", json.dumps(s).encode(), time.time())
        if i < len(noise):
            monitor.handle(f"lookout/{dev}/status", noise[i], time.time())
    row = next(r for r in monitor.registry.snapshot() if r["device_id"] == dev)
    assert row["state"] == states[-1]["state"] and row["messages"]["status"] == len(states)
    for key in ("version", "runtime", "model"):
        last = next((s[key] for s in reversed(states) if key in s), None)
        assert row[key] == last


# --- through a real broker -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_monitor() -> Iterator[tuple[Broker, Monitor]]:
    broker = start_broker("mosquitto")
    monitor = Monitor(Registry())
    try:
        monitor.start(broker.url)
        deadline = time.monotonic() + 20
        while not monitor.stats.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # SUBACK
        yield broker, monitor
    finally:
        monitor.stop()
        broker.stop()


mqtt_level = st.text(
    st.characters(blacklist_categories=("C",), blacklist_characters="/+#"), min_size=1, max_size=20
)


@pytest.mark.broker
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    batch=st.lists(
        st.one_of(
            valid_message(st.from_regex(r"[A-Za-z0-9_.-]{1,50}", fullmatch=True)),  # + a 9-character prefix
            st.tuples(
                st.builds(lambda d, k: f"lookout/{d}/{k}", mqtt_level, st.sampled_from(KINDS)),
                garbage_payload,
                st.none(),
                st.none(),
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_through_a_real_broker_every_message_is_applied_or_counted(batch, live_monitor) -> None:
    broker, monitor = live_monitor
    run = uuid.uuid4().hex[:8]  # this example's own devices: names are unique per example
    batch = [(t.replace("lookout/", f"lookout/{run}-", 1), p, k, v) for t, p, k, v in batch]
    before = {k: sum(getattr(d, COUNTER[k]) for d in monitor.registry.devices.values()) for k in KINDS}
    refused_before = _refused(monitor)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        for t, p, _, _ in batch:
            c.publish(t, p, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()

    def total() -> int:
        applied = sum(
            sum(getattr(d, COUNTER[k]) for d in monitor.registry.devices.values()) - before[k] for k in KINDS
        )
        return applied + _refused(monitor) - refused_before

    deadline = time.monotonic() + 20
    while total() < len(batch) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert total() == len(batch), (total(), len(batch))
    valid = [(t, k) for t, _, k, _ in batch if k is not None]
    for t, k in valid:
        dev = t.split("/")[1]
        assert _counter(monitor.registry, dev, k) >= 1, (t, k)
    assert not any(k.startswith("error:") for k in monitor.stats.malformed), monitor.stats.malformed
    assert math.isfinite(monitor.stats.lag.max_ms)
