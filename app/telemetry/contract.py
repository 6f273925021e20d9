"""The MQTT payload contract, version 1: every message Lookout puts on or takes off the wire, typed.

One pydantic model per kind. The device builds its payloads with them (``Payload.to_json``), the fleet
monitor parses with them (``parse``), and the JSON Schemas shipped in app/telemetry/schemas/ are
generated from them (``make schemas``; a test fails when a checked-in schema differs from the model).

Rules every kind follows:
- A device's payloads carry ``"v": 1``. A consumer handles the versions in ``SUPPORTED_VERSIONS`` and
  raises ``UnsupportedVersion`` for others (a payload without ``v`` predates the contract), which the
  monitor counts apart from malformed payloads. Commands may leave ``v`` out (it defaults to 1) so they
  can be typed by hand; a command for another version is refused.
- Scalars are strict (no ``"5"`` for 5, no ``true`` for 1) and unknown keys are errors.
- NaN and infinity never reach the wire: a non-finite number becomes null and its dotted path, with the
  reason, goes into the payload's ``reasons``; a kind without ``reasons`` refuses the payload.
- ``Absent[...]`` fields are left out when unset instead of being sent as null; on the wire (``parse``, and
  every command) a null for one is refused.

Adding a kind: one ``Payload`` subclass (docstring, ``topic``, ``sent_by_device``) and one entry in
``KINDS``; then ``make schemas``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.errors import LookoutError

log = logging.getLogger(__name__)

VERSION = 1
SUPPORTED_VERSIONS = frozenset({VERSION})
SCHEMA_ID = "https://lookout.local/schemas/v{version}/{kind}.json"

#: A field typed ``X | Absent`` is left out of the payload when it is None (the schema says X, not null).
Absent = SkipJsonSchema[None]
NonNegFloat = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
RuntimeName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
RequestId = Annotated[str, Field(max_length=128, description="optional request id, echoed in the reply")]


class ContractError(LookoutError):
    """A payload does not fit its kind's model (one line: kind, dotted path, what is wrong)."""


class UnsupportedVersion(ContractError):
    """A payload of a contract version this code does not speak (``version`` None: no ``v`` at all)."""

    def __init__(self, kind: str, version: int | None) -> None:
        self.kind = kind
        self.version = version
        said = "has no 'v' (older than the v1 contract)" if version is None else f"is version {version}"
        super().__init__(
            f"{kind} payload {said}; supported: {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}"
        )


def _is_absent(annotation: Any) -> bool:
    return any(get_origin(a) is Annotated and get_args(a)[0] is type(None) for a in get_args(annotation))


class Model(BaseModel):
    """Strict, closed, finite: the base of every payload and of every object inside one."""

    model_config = ConfigDict(
        strict=True, extra="forbid", allow_inf_nan=False, populate_by_name=True, frozen=True
    )
    #: (name, alias) of the fields left out when None / left out when never set (class-computed)
    _absent: ClassVar[tuple[tuple[str, str], ...]] = ()
    _drop_unset: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._absent = tuple(
            (name, f.alias or name) for name, f in cls.model_fields.items() if _is_absent(f.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _absent_not_null(cls, data: Any, info: ValidationInfo) -> Any:
        """Data from the wire leaves an ``Absent`` field out; it is never null (the schemas say so)."""
        if cls._absent and isinstance(data, dict) and (info.context or {}).get("wire"):
            for key in dict.fromkeys(k for pair in cls._absent for k in pair):
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' may be left out but not null")
        return data

    @model_serializer(mode="wrap")
    def _leave_out(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name, alias in self._absent:
            for key in (alias, name):
                if key in data and data[key] is None:
                    del data[key]
        for name in self._drop_unset - self.model_fields_set:
            data.pop(name, None)
        return data


class Payload(Model):
    """One MQTT message body. ``topic`` documents where it travels; ``sent_by_device`` makes ``v`` required."""

    topic: ClassVar[str] = ""
    sent_by_device: ClassVar[bool] = True

    v: Literal[1] = Field(default=VERSION, description="contract version of this payload")

    @field_validator("v", mode="before")
    @classmethod
    def _v_not_bool(cls, v: Any) -> Any:
        """`true` is not 1 (a lax Literal[1] takes it; the schemas' integer const does not)."""
        if isinstance(v, bool):
            raise ValueError(f"Input should be the integer 1, not a boolean (got {v!r})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _finite_or_null(cls, data: Any) -> Any:
        """NaN/inf -> null, recorded in `reasons` (kinds without `reasons` refuse the payload)."""
        if not isinstance(data, dict):
            return data
        found: dict[str, str] = {}
        clean = _nonfinite_to_none(data, "", found)
        if not found:
            return data
        if "reasons" not in cls.model_fields:
            path, why = next(iter(found.items()))
            raise ValueError(f"{path}: {why}")
        clean["reasons"] = {**found, **(clean.get("reasons") or {})}
        return clean

    def to_wire(self) -> dict[str, Any]:
        """The payload as JSON-ready data (aliases applied, absent fields left out)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> bytes:
        """The payload as compact UTF-8 JSON, as published."""
        return self.model_dump_json(by_alias=True).encode()


def _nonfinite_to_none(value: Any, path: str, found: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found[path.lstrip(".")] = f"not a finite number ({value})"
        return None
    if isinstance(value, dict):
        return {k: _nonfinite_to_none(v, f"{path}.{k}", found) for k, v in value.items()}
    if isinstance(value, list):
        return [_nonfinite_to_none(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


# --- status ---------------------------------------------------------------------------------------
class Fallback(Model):
    """Why the requested runtime is not the active one."""

    from_: str = Field(alias="from", description="requested runtime")
    to: str = Field(description="runtime running instead")
    reason: str


STATUS_FIELDS = ("version", "runtime", "model", "fallback", "board", "started_at", "ts")


class Status(Payload):
    """Device state. The MQTT will is {"v": 1, "state": "offline"} alone; every other state carries all
    of version, runtime, model, fallback, board, started_at and ts."""

    topic: ClassVar[str] = "<prefix>/<device_id>/status (retained, QoS 1)"
    _drop_unset: ClassVar[frozenset[str]] = frozenset(STATUS_FIELDS)

    state: Literal["online", "degraded", "offline", "stopped"]
    version: str | Absent = Field(default=None, description="lookout package version")
    runtime: str | None = Field(default=None, description="active runtime, null before one is loaded")
    model: str | None = None
    fallback: Fallback | None = Field(
        default=None, description="null, or why the requested runtime is not running"
    )
    board: str | None = Field(
        default=None, description="hardware model from /proc/device-tree/model, null where there is none"
    )
    started_at: float | Absent = Field(default=None, description="process start, Unix seconds")
    ts: float | Absent = Field(default=None, description="Unix seconds")
    reason: str | Absent = Field(default=None, description="why the state is degraded")
    spool_depth: NonNegInt | Absent = Field(default=None, description="messages waiting in the spool")
    spool_dropped: NonNegInt | Absent = Field(
        default=None,
        description="messages lost since the spool was created: dropped by its bounds, or not kept "
        "(e.g. disk full) while the broker was unreachable",
    )
    spool_drop_reasons: dict[str, NonNegInt] | Absent = Field(
        default=None,
        description="spool_dropped by reason: max_messages, max_age_s, disk full, spool error: ...",
    )

    @model_validator(mode="after")
    def _complete_unless_offline(self) -> Status:
        if self.state != "offline":
            missing = [f for f in STATUS_FIELDS if f not in self.model_fields_set]
            missing += [
                f for f in ("version", "started_at", "ts") if f not in missing and getattr(self, f) is None
            ]
            if missing:
                raise ValueError(f"{', '.join(map(repr, missing))} required unless state is 'offline'")
        return self

    @classmethod
    def schema_extra(cls) -> dict[str, Any]:
        return {
            "if": {"properties": {"state": {"const": "offline"}}},
            "else": {"required": list(STATUS_FIELDS)},
        }


# --- detections -----------------------------------------------------------------------------------
class DetectedKeypoint(Model):
    """One body landmark of a detection (pose models, the person detector), in source-frame pixels."""

    name: str = Field(min_length=1)
    x: float
    y: float
    score: float = Field(ge=0, le=1)


class DetectedObject(Model):
    """One detection: label, score, box [x0, y0, x1, y1] in source-frame pixels, keypoints if any."""

    label: str = Field(min_length=1)
    score: float = Field(ge=0, le=1)
    box: list[float] = Field(
        min_length=4, max_length=4, description="[x0, y0, x1, y1] in source-frame pixels"
    )
    keypoints: list[DetectedKeypoint] | Absent = None


class Detections(Payload):
    """One frame's detections. seq grows by exactly one per message and survives restarts."""

    topic: ClassVar[str] = "<prefix>/<device_id>/detections (QoS 1)"

    seq: int = Field(ge=1, description="persisted, gap-free message number")
    ts: float = Field(description="Unix seconds")
    frame: NonNegInt = Field(description="frame index since the service started")
    model: str
    runtime: str
    detections: list[DetectedObject]
    latency_ms: dict[str, NonNegFloat] = Field(description="per-stage time for this frame, ms")


# --- metrics --------------------------------------------------------------------------------------
THROTTLE_BITS = ("under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit")
SINCE_BOOT_SHIFT = 16


class ThrottleFlags(Model):
    """Raspberry Pi firmware flags (vcgencmd get_throttled), one moment or since boot."""

    under_voltage: bool
    arm_freq_capped: bool
    throttled: bool
    soft_temp_limit: bool

    @property
    def slowed(self) -> bool:
        """The CPU ran slower than asked: frequency capped, throttled or at the soft temperature limit."""
        return self.arm_freq_capped or self.throttled or self.soft_temp_limit


class Throttling(Model):
    """`vcgencmd get_throttled` decoded: bits 0-3 now, bits 16-19 since boot; `raw` is the register."""

    raw: str = Field(pattern=r"^0x[0-9a-f]{1,8}$", description="the register as the firmware printed it, hex")
    now: ThrottleFlags
    since_boot: ThrottleFlags

    @classmethod
    def from_register(cls, value: int) -> Throttling:
        """The one decoder of the get_throttled register."""
        return cls(raw=f"0x{value:x}", now=_flags(value, 0), since_boot=_flags(value, SINCE_BOOT_SHIFT))

    @model_validator(mode="after")
    def _flags_match_raw(self) -> Throttling:
        value = int(self.raw, 16)
        if self.now.model_dump() != _flags(value, 0) or self.since_boot.model_dump() != _flags(
            value, SINCE_BOOT_SHIFT
        ):
            raise ValueError(f"now/since_boot do not match raw {self.raw}")
        return self


def _flags(value: int, shift: int) -> dict[str, bool]:
    return {name: bool(value >> (shift + bit) & 1) for bit, name in enumerate(THROTTLE_BITS)}


class Percentiles(Model):
    """p50/p90/p99 of one stage over the metrics interval, ms (null when it did not run)."""

    p50: NonNegFloat | None
    p90: NonNegFloat | None
    p99: NonNegFloat | None


class Metrics(Payload):
    """One metrics interval. Unmeasured values are null, never 0, and `reasons` says why; power_source
    says where the power figures come from (or why there are none)."""

    topic: ClassVar[str] = "<prefix>/<device_id>/metrics (QoS 1, every metrics_interval_s)"

    ts: float = Field(description="Unix seconds")
    fps: NonNegFloat | None
    latency_ms: dict[str, Percentiles] = Field(description="per stage: p50/p90/p99 over the interval")
    power_w: NonNegFloat | None = Field(description="mean power during inference since start, W")
    power_source: str = Field(min_length=1, description="meter name, or why there is no figure")
    energy_mj_per_inference: NonNegFloat | None
    temp_c: float | None = Field(description="hottest sensor, °C")
    temps: dict[str, float] = Field(description="every sensor, °C (thermal zone type, apex_N)")
    cpu_percent: NonNegFloat | None
    rss_mb: NonNegFloat | None
    dropped_frames: NonNegInt | None
    spool_depth: NonNegInt
    spool_dropped: NonNegInt = Field(
        description="messages lost: dropped by the spool's bounds, or not kept (e.g. disk full) while the "
        "broker was unreachable"
    )
    spool_drop_reasons: dict[str, NonNegInt] = Field(
        default_factory=dict,
        description="spool_dropped by reason: max_messages, max_age_s, disk full, spool error: ...",
    )
    runtime: str
    model: str
    throttled: Throttling | None = Field(description="Raspberry Pi throttling, null where unknown")
    reasons: dict[str, str] = Field(description="field (dotted path) -> why it is null")


# --- bench ----------------------------------------------------------------------------------------
class BenchLatency(Model):
    """Per-inference latency over the timed queries, ms."""

    p50: NonNegFloat | None
    p90: NonNegFloat | None
    p99: NonNegFloat | None
    mean: NonNegFloat | None
    min: NonNegFloat | None
    max: NonNegFloat | None


class BenchPower(Model):
    source: str = Field(description="meter name, or why there is no figure")
    mean_w: NonNegFloat | None
    idle_w: NonNegFloat | None = None
    energy_mj_per_inference_net: float | None = None


class Agreement(Model):
    """How far this runtime's outputs are from the reference runtime's on the same images."""

    reference: str | None
    max_abs_diff: NonNegFloat | None
    mean_iou: Annotated[float, Field(ge=0, le=1)] | None
    note: str | Absent = None


class BenchResult(Model):
    """One runtime's measurement (numbers null and `error` set when it could not be measured)."""

    runtime: str
    error: str | Absent = None
    load_s: NonNegFloat | None = None
    first_inference_ms: NonNegFloat | None = None
    latency_ms: BenchLatency | None = None
    throughput_fps: NonNegFloat | None = None
    rss_mb: NonNegFloat | None = None
    model_bytes: NonNegInt | None = None
    power: BenchPower | None = None
    energy_mj_per_inference: NonNegFloat | None = None
    agreement: Agreement | None = None
    queries: NonNegInt | Absent = None
    duration_s: NonNegFloat | Absent = None
    threads: int | Absent = None
    artifact: str | Absent = None
    detections: dict[str, NonNegInt] | Absent = Field(default=None, description="image -> detections")
    fallback: Fallback | Absent = None


class BenchHost(Model):
    """The machine the bench ran on (unknown parts left out; `simulated` marks synthetic numbers)."""

    cpu: str | Absent = None
    machine: str | Absent = None
    cores: NonNegInt | Absent = None
    cores_physical: NonNegInt | Absent = None
    os: str | Absent = None
    kernel: str | Absent = None
    python: str | Absent = None
    runtimes: dict[str, str | None] | Absent = Field(default=None, description="distribution -> version")
    power_meter: str | Absent = None
    simulated: str | Absent = Field(default=None, description="set when the numbers are synthetic")


class BenchSettings(Model):
    min_queries: NonNegInt
    min_duration_s: NonNegFloat
    warmup: NonNegInt
    threads: int | None
    scenario: str


class Bench(Payload):
    """The `lookout bench --json` document, as the device publishes it after a bench command."""

    topic: ClassVar[str] = "<prefix>/<device_id>/bench (retained, QoS 1)"

    model: str
    host: BenchHost
    results: list[BenchResult]
    settings: BenchSettings | Absent = None
    ts: float = Field(description="Unix seconds")
    reasons: dict[str, str] | Absent = Field(
        default=None, description="field (dotted path) -> why it is null"
    )


# --- events and presence --------------------------------------------------------------------------
Score = Annotated[float, Field(ge=0, le=1)]


class Event(Payload):
    """A label's presence started, its smoothed count changed, or it ended. `seq` is the events topic's own
    persisted, gap-free message number (separate from the detections' seq). The snapshot topic carries a
    bare JPEG, not JSON, so it has no kind here."""

    topic: ClassVar[str] = "<prefix>/<device_id>/events (QoS 1)"

    seq: int = Field(ge=1, description="persisted, gap-free message number of the events topic")
    type: Literal["start", "update", "end"]
    label: str = Field(min_length=1)
    count: NonNegInt = Field(description="detections of the label per frame, smoothed (K of N); 0 at end")
    max_score: Score = Field(description="highest score of the label since the presence started")
    started_at: float = Field(description="first sighting of the presence, Unix seconds")
    ts: float = Field(description="when this change happened, Unix seconds")
    snapshot: bool = Field(description="a snapshot of this moment was published on the snapshot topic first")


class LabelPresence(Model):
    count: NonNegInt = Field(description="smoothed count now (0 while the end is pending)")
    max_score: Score
    started_at: float = Field(description="Unix seconds")


class Presence(Payload):
    """The labels present now (absent labels are left out). Retained: a consumer that starts later, or Home
    Assistant after a restart, knows the current state at once."""

    topic: ClassVar[str] = "<prefix>/<device_id>/presence (retained, QoS 1)"

    ts: float = Field(description="Unix seconds")
    present: dict[str, LabelPresence] = Field(description="label -> its presence")


# --- commands and replies -------------------------------------------------------------------------
class Command(Payload):
    """Base of the commands a device takes on <prefix>/<device_id>/cmd/<verb>."""

    sent_by_device: ClassVar[bool] = False

    id: RequestId | Absent = None


class SwapCommand(Command):
    """Hot swap: load and warm `model` on `runtime` beside the running engine, then switch."""

    topic: ClassVar[str] = "<prefix>/<device_id>/cmd/swap (QoS 1)"

    model: str = Field(
        min_length=1,
        max_length=256,
        description="model name: a folder of the device's models directory (letters, digits, '.', '_', '+', '-'); no paths",
    )
    runtime: RuntimeName


class BenchCommand(Command):
    """Run `lookout bench` on the device and publish the document on the bench topic."""

    topic: ClassVar[str] = "<prefix>/<device_id>/cmd/bench (QoS 1)"

    runtimes: list[RuntimeName] = Field(min_length=1, max_length=8, json_schema_extra={"uniqueItems": True})
    frames: Annotated[int, Field(ge=1, le=100_000)] | Absent = None

    @model_validator(mode="after")
    def _unique(self) -> BenchCommand:
        if len(set(self.runtimes)) != len(self.runtimes):
            raise ValueError("runtimes: each runtime at most once")
        return self


CONFIG_KEYS = ("metrics_interval_s", "publish_empty", "score_threshold")


class ConfigCommand(Command):
    """Change a safe subset of the running config (at least one key)."""

    topic: ClassVar[str] = "<prefix>/<device_id>/cmd/config (QoS 1)"

    metrics_interval_s: Annotated[float, Field(gt=0, le=86400)] | Absent = None
    publish_empty: bool | Absent = None
    score_threshold: Annotated[float, Field(ge=0, le=1)] | Absent = None

    @model_validator(mode="after")
    def _one_key(self) -> ConfigCommand:
        if all(getattr(self, k) is None for k in CONFIG_KEYS):
            raise ValueError(f"expected at least one of {', '.join(CONFIG_KEYS)}")
        return self

    @classmethod
    def schema_extra(cls) -> dict[str, Any]:
        return {"anyOf": [{"required": [k]} for k in CONFIG_KEYS]}


class EngineRef(Model):
    model: str
    runtime: str


class AppliedConfig(Model):
    """The settings a config command changed, as they now are."""

    metrics_interval_s: float | Absent = None
    publish_empty: bool | Absent = None
    score_threshold: float | Absent = None


class CommandReply(Payload):
    """ok with the verb's result fields, or ok=false with a one-line error. Also sent to the MQTT 5
    response topic of the request, with its correlation data."""

    topic: ClassVar[str] = "<prefix>/<device_id>/cmd/<verb>/reply (QoS 1)"
    _drop_unset: ClassVar[frozenset[str]] = frozenset({"fallback"})  # a swap's reply sets it, null or not

    ok: bool
    verb: str
    ts: float = Field(description="Unix seconds")
    id: str | Absent = Field(default=None, description="the request's id when it had one")
    error: str | Absent = Field(default=None, min_length=1, description="why it failed (ok=false only)")
    from_: EngineRef | Absent = Field(default=None, alias="from", description="swap: what ran before")
    to: EngineRef | Absent = Field(default=None, description="swap: what runs now")
    fallback: Fallback | None = Field(
        default=None, description="swap: null, or why the runtime is not the requested one"
    )
    load_s: NonNegFloat | Absent = Field(default=None, description="swap: load and warm-up time, s")
    applied: AppliedConfig | Absent = Field(default=None, description="config: what changed")
    results: NonNegInt | Absent = Field(default=None, description="bench: runtimes measured")
    response_topic_refused: str | Absent = Field(
        default=None,
        min_length=1,
        description="MQTT 5: why the request's Response Topic was not used (it lies outside this reply topic)",
    )

    @model_validator(mode="after")
    def _error_iff_failed(self) -> CommandReply:
        if not self.ok and not self.error:
            raise ValueError("'error' required when ok is false")
        if self.ok and self.error is not None:
            raise ValueError("'error' not allowed when ok is true")
        return self

    @classmethod
    def schema_extra(cls) -> dict[str, Any]:
        return {
            "if": {"properties": {"ok": {"const": False}}},
            "then": {"required": ["error"]},
            "else": {"not": {"required": ["error"]}},
        }


#: Every kind of payload: the one registry (schema file names, monitor dispatch, validation).
KINDS: dict[str, type[Payload]] = {
    "status": Status,
    "detections": Detections,
    "metrics": Metrics,
    "bench": Bench,
    "events": Event,
    "presence": Presence,
    "cmd_swap": SwapCommand,
    "cmd_bench": BenchCommand,
    "cmd_config": ConfigCommand,
    "cmd_reply": CommandReply,
}


def model_for(kind: str) -> type[Payload]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ContractError(f"no payload kind {kind!r}; expected one of {', '.join(KINDS)}") from None


def command_kind(verb: str) -> str:
    """Payload kind of a command verb: swap -> cmd_swap."""
    return f"cmd_{verb}"


def schema_id(kind: str) -> str:
    return SCHEMA_ID.format(version=VERSION, kind=kind)


# --- parsing (consumers) --------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str) -> dict[str, Any]:
    """A JSON object from the wire (NaN/Infinity are not JSON); ValueError naming what is wrong."""
    data = json.loads(raw, parse_constant=_refuse_constant)
    if not isinstance(data, dict):
        raise ValueError(f"payload is {type(data).__name__}, not an object")
    return data


def check_version(kind: str, data: Mapping[str, Any], *, required: bool = True) -> None:
    """UnsupportedVersion unless `data` speaks a version we know. A missing `v` is refused for a device's
    payloads when `required` (a consumer reading the wire); commands may always leave it out."""
    v = data.get("v")
    if v is None:
        if required and model_for(kind).sent_by_device:
            raise UnsupportedVersion(kind, None)
        return
    if type(v) is int and v not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(kind, v)


def parse(kind: str, data: Any) -> Payload:
    """A consumer's check of decoded JSON from the wire: the `kind` model, or ContractError /
    UnsupportedVersion (a device payload without `v` predates the contract)."""
    return _validate(kind, data, require_v=True)


def build(kind: str, data: Mapping[str, Any]) -> Payload:
    """A producer's construction of a `kind` payload from plain data (`v` filled in; None leaves an
    ``Absent`` field out): the model, or ContractError naming the first problem. A command is checked as
    the wire data it is."""
    return _validate(kind, data, require_v=False)


def _validate(kind: str, data: Any, *, require_v: bool) -> Payload:
    cls = model_for(kind)
    if isinstance(data, Mapping):
        check_version(kind, data, required=require_v)
    wire = require_v or not cls.sent_by_device  # a consumer's input, or a command (always from the wire)
    try:
        return cls.model_validate(data, context={"wire": wire})
    except ValidationError as exc:
        raise ContractError(describe(kind, exc)) from None


def describe(kind: str, exc: ValidationError) -> str:
    """One line from the first validation error: kind, dotted path, message, the offending value."""
    err = exc.errors(include_url=False)[0]
    loc = err["loc"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(root)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = f"'{loc[-1]}' is a required property"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[:-1]).lstrip(".") or "(root)"
    elif err["type"] == "extra_forbidden":
        msg = f"'{loc[-1]}' is not allowed"
    elif err["type"] not in ("value_error", "assertion_error") and "input" in err:
        got = repr(err["input"])
        msg += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{kind} payload {where}: {msg}{more}".replace("\n", " ")


# --- building (the device) ------------------------------------------------------------------------
PERCENTILES = ("p50", "p90", "p99")


def latency_percentiles(summary: Mapping[str, Mapping[str, float]], stages: Iterable[str]) -> dict[str, Any]:
    """{stage: {p50, p90, p99}} in ms from a histogram summary ({stage: {"p50_ms": ...}})."""
    return {s: {k: summary[s][f"{k}_ms"] for k in PERCENTILES} for s in stages if s in summary}


def _finite(*values: Any) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in values)


def finite_detections(detections: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Detections whose score and box are finite numbers, with their keypoints (a keypoint whose x, y or
    score is not finite is left out); the others are dropped and logged (a model that outputs NaN has no
    detection to report)."""
    kept = []
    for d in detections:
        if not _finite(d.get("score"), *(d.get("box") or ())):
            log.warning("dropped a detection with a non-finite score or box: %r", dict(d))
            continue
        out = {"label": d.get("label"), "score": d.get("score"), "box": list(d.get("box") or ())}
        if d.get("keypoints") is not None:
            points = [dict(k) for k in d["keypoints"]]
            out["keypoints"] = [k for k in points if _finite(k.get("x"), k.get("y"), k.get("score"))]
            if len(out["keypoints"]) < len(points):
                log.warning(
                    "dropped %d non-finite keypoint(s) of a %r detection",
                    len(points) - len(out["keypoints"]),
                    d.get("label"),
                )
        kept.append(out)
    return kept


def detections_fields(
    *,
    ts: float,
    frame: int,
    model: str,
    runtime: str,
    detections: Iterable[Mapping[str, Any]],
    latency_ms: Mapping[str, float],
) -> dict[str, Any]:
    """One processed frame's detections payload without its `seq` (telemetry allocates it)."""
    return {
        "ts": ts,
        "frame": frame,
        "model": model,
        "runtime": runtime,
        "detections": finite_detections(detections),
        "latency_ms": dict(latency_ms),
    }


def metrics(
    *,
    ts: float,
    fps: float,
    latency_ms: Mapping[str, Any],
    energy: Mapping[str, Any],
    health: Mapping[str, Any],
    dropped_frames: int,
    spool_depth: int,
    spool_dropped: int,
    runtime: str,
    model: str,
    spool_drop_reasons: Mapping[str, int] | None = None,
) -> Metrics:
    """One metrics interval from plain data: rates, stage percentiles, energy summary, health snapshot
    (ContractError when a figure does not fit)."""
    return build(
        "metrics",
        {
            "ts": ts,
            "fps": round(fps, 2),
            "latency_ms": dict(latency_ms),
            "power_w": energy.get("power_w"),
            "power_source": energy.get("power_source") or "none: no power meter",
            "energy_mj_per_inference": energy.get("energy_mj_per_inference"),
            "temp_c": health.get("temp_c"),
            "temps": dict(health.get("temps") or {}),
            "cpu_percent": health.get("cpu_percent"),
            "rss_mb": health.get("rss_mb"),
            "dropped_frames": dropped_frames,
            "spool_depth": spool_depth,
            "spool_dropped": spool_dropped,
            "spool_drop_reasons": dict(spool_drop_reasons or {}),
            "runtime": runtime,
            "model": model,
            "throttled": health.get("throttled"),
            "reasons": dict(health.get("reasons") or {}),
        },
    )  # type: ignore[return-value]


def status_fields(
    *,
    state: str,
    runtime: str | None,
    model: str | None,
    fallback: Mapping[str, str] | None,
    started_at: float,
    board: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The device's own part of the retained status (telemetry adds version, spool and ts)."""
    fields: dict[str, Any] = {
        "state": state,
        "runtime": runtime,
        "model": model,
        "fallback": dict(fallback) if fallback else None,
        "board": board,
        "started_at": started_at,
    }
    if reason:
        fields["reason"] = reason
    return fields


def event_fields(
    *,
    type: str,
    label: str,
    count: int,
    max_score: float,
    started_at: float,
    ts: float,
    snapshot: bool,
) -> dict[str, Any]:
    """One presence change as an events payload without its `seq` (telemetry allocates it)."""
    return {
        "type": type,
        "label": label,
        "count": count,
        "max_score": round(float(max_score), 4),
        "started_at": started_at,
        "ts": ts,
        "snapshot": snapshot,
    }


def presence_payload(present: Mapping[str, Mapping[str, Any]], ts: float) -> dict[str, Any]:
    """The retained presence state: {label: {count, max_score, started_at}} of the labels present."""
    return {"ts": ts, "present": {k: dict(v) for k, v in present.items()}}


def offline_will() -> bytes:
    """The retained MQTT will: what the broker says when the device vanishes."""
    return Status(state="offline").to_json()
