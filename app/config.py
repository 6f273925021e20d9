"""Typed configuration: pydantic models loaded from one TOML file.

Search order: --config, $LOOKOUT_CONFIG, ./lookout.toml, /etc/lookout/config.toml, built-in defaults.
Runtime, source and power meter are discriminated unions on `type`. Runtime variants come from the
runtime plugins (entry points), so a third-party runtime brings its own config model.
"""

from __future__ import annotations

import functools
import operator
import os
import reprlib
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    SerializeAsAny,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.errors import ConfigError
from app.finite import MODEL_CONFIG
from app.redact import redact, remember
from app.runtimes.base import RuntimeConfig, switch_runtime

SEARCH_PATHS = (Path("lookout.toml"), Path("/etc/lookout/config.toml"))

#: Frame rates a camera or the `fps` cap may have: one frame per 100 s to 1000 per second.
FPS_MIN, FPS_MAX = 0.01, 1000.0


def frame_rate(default: float | None, description: str) -> Any:
    """A frame-rate field, bounded to [FPS_MIN, FPS_MAX] (a rate of 1e-300 overflows the frame period)."""
    return Field(default=default, ge=FPS_MIN, le=FPS_MAX, description=description)


class Strict(BaseModel):
    model_config = MODEL_CONFIG  # unknown keys and non-finite numbers are errors


# --- sources -------------------------------------------------------------------------------------
class OpenCVSource(Strict):
    type: Literal["opencv"] = "opencv"
    uri: str = Field(
        default="demo",
        description="video file, /dev/videoN, camera index, rtsp:// or http:// URL; 'demo' = bundled demo video",
    )
    loop: bool = Field(default=True, description="restart a video file at its end")
    realtime: bool = Field(default=False, description="pace a video file at its own fps")
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)


class Picamera2Source(Strict):
    type: Literal["picamera2"] = "picamera2"
    camera: int = Field(default=0, ge=0)
    width: int = Field(default=640, ge=1)
    height: int = Field(default=480, ge=1)
    fps: float = frame_rate(30.0, "sensor frame rate")


class ImagesSource(Strict):
    type: Literal["images"] = "images"
    folder: Path
    loop: bool = True


class SyntheticSource(Strict):
    type: Literal["synthetic"] = "synthetic"
    width: int = Field(default=640, ge=1)
    height: int = Field(default=480, ge=1)
    seed: int = 0


SourceConfig = Annotated[
    OpenCVSource | Picamera2Source | ImagesSource | SyntheticSource, Field(discriminator="type")
]


class ReconnectConfig(Strict):
    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=30.0, gt=0)


# --- power meters --------------------------------------------------------------------------------
class NoMeter(Strict):
    type: Literal["none"] = "none"


class HwmonMeter(Strict):
    type: Literal["hwmon"] = "hwmon"
    name: str = Field(default="ina219", description="hwmon device name file: ina219, ina226, ina260 ...")
    root: Path = Path("/sys/class/hwmon")
    rate_hz: float = Field(default=200.0, gt=0)


class Ina2xxI2CMeter(Strict):
    type: Literal["ina2xx_i2c"] = "ina2xx_i2c"
    chip: Literal["ina219", "ina260"] = "ina219"
    bus: int = Field(default=1, ge=0)
    address: int = Field(default=0x40, ge=0x03, le=0x77)
    shunt_ohms: float = Field(default=0.1, gt=0)
    max_expected_a: float = Field(default=3.2, gt=0)
    rate_hz: float = Field(default=200.0, gt=0)


class RpiPmicMeter(Strict):
    type: Literal["rpi_pmic"] = "rpi_pmic"
    vcgencmd: str = "vcgencmd"
    rate_hz: float = Field(default=20.0, gt=0)


class RaplMeter(Strict):
    type: Literal["rapl"] = "rapl"
    root: Path = Path("/sys/class/powercap")
    zone: str = "intel-rapl:0"
    rate_hz: float = Field(default=200.0, gt=0)


MeterConfig = Annotated[
    NoMeter | HwmonMeter | Ina2xxI2CMeter | RpiPmicMeter | RaplMeter, Field(discriminator="type")
]


# --- everything else -----------------------------------------------------------------------------
class PipelineConfig(Strict):
    score_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="override the model manifest's score threshold"
    )
    fps: float | None = frame_rate(None, "cap the capture rate (frames per second)")
    max_frames: int | None = Field(default=None, ge=1)
    warmup: int = Field(default=5, ge=0, description="inferences run before timing starts")
    queue_size: int = Field(default=2, ge=1, le=64)


def _remembered(secret: SecretStr) -> SecretStr:
    remember(secret.get_secret_value())
    return secret


# A secret: shown as '**********' by repr, str and `config show`; its value is scrubbed from every
# output, error and log line (app/redact.py); a validation error never echoes it.
Secret = Annotated[SecretStr, AfterValidator(_remembered)]
SECRET_KEYS = frozenset({"password"})


class TlsConfig(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "cert_file and key_file must be given together (a client certificate and its key)"
            )
        return self


def _broker_url(url: str) -> str:
    from app.telemetry.broker_url import parse_broker_url

    try:
        parse_broker_url(url, "mqtt.url")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return url


def _topic_prefix(prefix: str) -> str:
    from app.telemetry.topics import check_prefix

    try:
        return check_prefix(prefix)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class MqttConfig(Strict):
    enabled: bool = True
    url: Annotated[str, AfterValidator(_broker_url)] = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt://[user[:password]@]host[:port] or mqtts://..."
    )
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: Secret | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "lookout"
    publish_empty: bool = Field(default=False, description="publish frames without detections too")
    metrics_interval_s: float = Field(default=5.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    homeassistant: bool = True


class SpoolConfig(Strict):
    max_messages: int = Field(default=100_000, ge=10)
    max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    drop_policy: Literal["drop_oldest", "drop_newest"] = "drop_oldest"


class EventsConfig(Strict):
    """Presence per label from the detections: events, the retained presence state, Home Assistant."""

    enabled: bool = True
    labels: list[str] | None = Field(
        default=None, description="labels to track; default: every label of the model"
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="detections below this score do not count (default: all)"
    )
    start_frames: int = Field(
        default=3, ge=1, description="K: seen in K of the last N frames starts presence"
    )
    window_frames: int = Field(default=5, ge=1, le=100, description="N: the window of frames")
    end_after_s: float = Field(default=2.0, ge=0, description="T: presence ends after T s unconfirmed")

    @model_validator(mode="after")
    def _k_within_n(self) -> EventsConfig:
        if self.start_frames > self.window_frames:
            raise ValueError(
                f"start_frames ({self.start_frames}) must not exceed window_frames ({self.window_frames})"
            )
        return self


class SnapshotConfig(Strict):
    """A JPEG of the frame at each presence start, retained on the snapshot topic."""

    enabled: bool = True
    boxes: bool = Field(default=True, description="draw the boxes of the detections that count")
    max_kb: int = Field(default=100, ge=4, le=10_000, description="JPEG quality steps down to fit")
    save: bool = Field(default=False, description="also keep them under <state_dir>/snapshots")
    keep: int = Field(default=100, ge=1, description="with save: how many files to keep (newest)")


class BenchConfig(Strict):
    min_queries: int = Field(default=300, ge=1, description="MLPerf single-stream: minimum timed queries")
    min_duration_s: float = Field(default=0.0, ge=0, description="minimum timed duration")
    warmup: int = Field(default=10, ge=0)


def default_device_id() -> str:
    return socket.gethostname().split(".")[0] or "lookout"


def default_state_dir() -> Path:
    env = os.environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
    if env:
        return Path(env.split(":")[0])
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "lookout"


def default_models_dir() -> Path:
    """models/ of the checkout, or $LOOKOUT_MODELS_DIR."""
    env = os.environ.get("LOOKOUT_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


@functools.cache
def runtime_adapter() -> TypeAdapter[RuntimeConfig]:
    """Validator of the discriminated union of every registered runtime's config model."""
    from app.runtimes.base import discover

    models = [r.cls.config_model for r in discover().values() if r.cls is not None]
    if not models:
        raise ConfigError("no runtime plugins registered (is the package installed? run pip install -e .)")
    union = (
        models[0]
        if len(models) == 1
        else Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]
    )
    return TypeAdapter(union)


#: The type of a runtime, source or meter table that names none (the same as when the table is absent).
DEFAULT_TYPES = {"runtime": "tflite", "source": OpenCVSource().type, "meter": NoMeter().type}


class LookoutConfig(Strict):
    """The root config. `runtime` is the registered runtime's own config model (a plugin-built union)."""

    device_id: str = Field(default_factory=default_device_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    model: str = "blazeface-short"
    models_dir: Path = Field(default_factory=default_models_dir)
    state_dir: Path = Field(default_factory=default_state_dir)
    runtime: SerializeAsAny[RuntimeConfig] = Field(
        default_factory=lambda: {"type": DEFAULT_TYPES["runtime"]},  # type: ignore[arg-type,return-value]
        validate_default=True,
    )
    source: SourceConfig = Field(default_factory=OpenCVSource)
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    meter: MeterConfig = Field(default_factory=NoMeter)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)

    @field_validator("source", "meter", mode="before")
    @classmethod
    def _default_type(cls, value: object, info: ValidationInfo) -> object:
        return with_default_type(value, str(info.field_name))

    @field_validator("runtime", mode="plain")
    @classmethod
    def _runtime_variant(cls, value: object) -> RuntimeConfig:
        return runtime_adapter().validate_python(with_default_type(value, "runtime"))


def with_default_type(value: object, table: str) -> object:
    """A runtime, source or meter table without `type` is of the default type, as when it is absent."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": DEFAULT_TYPES[table]}
    return value


def validate_runtime(data: dict[str, Any] | RuntimeConfig, where: str = "runtime") -> RuntimeConfig:
    """One runtime table -> that runtime's typed config; ConfigError with one line."""
    try:
        return runtime_adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The config file by search order, or None for built-in defaults."""
    if explicit:
        return _existing_file(Path(explicit), "")
    env = os.environ.get("LOOKOUT_CONFIG")
    if env:
        return _existing_file(Path(env), " (from $LOOKOUT_CONFIG)")
    return next((p for p in SEARCH_PATHS if p.is_file()), None)


def _existing_file(p: Path, origin: str) -> Path:
    if p.is_dir():
        raise ConfigError(f"config file {p}{origin} is a directory, not a file")
    if not p.is_file():
        raise ConfigError(f"config file {p}{origin} not found")
    return p


def read_config_text(path: Path) -> str:
    """The config file as text; ConfigError in one line when it is not UTF-8 text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: not UTF-8 text: it is UTF-16 (save it as UTF-8)")
    if b"\x00" in raw:
        raise ConfigError(
            f"{path}: not UTF-8 text: it contains NUL bytes (binary data, or UTF-16 without a BOM?)"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} (offset {exc.start}) "
            "is not valid UTF-8"
        ) from None


def load_config(explicit: str | Path | None = None, overrides: dict[str, Any] | None = None) -> LookoutConfig:
    """Load, merge flag overrides (dotted keys), validate. Raises ConfigError with one line."""
    path = find_config_file(explicit)
    data: dict[str, Any] = {}
    where = str(path) if path else "built-in defaults"
    if path:
        text = read_config_text(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
        _anchor_tls_paths(data, path.parent)
    file = where  # a table the flags go into must be a table in the file
    for dotted, value in (overrides or {}).items():
        if dotted == "runtime.type":
            data["runtime"] = switch_runtime(value, _table(data, "runtime", file))
        else:
            _set_dotted(data, dotted, value, file)
        where = f"{file} + flags"
    return validate_config(data, where)


def _anchor_tls_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative [mqtt.tls] files in a config file are relative to that file (as flash.sh reads them), not
    to the working directory (/ under systemd)."""
    mqtt = data.get("mqtt")
    tls = mqtt.get("tls") if isinstance(mqtt, dict) else None
    if not isinstance(tls, dict):
        return
    for key in ("ca_file", "cert_file", "key_file"):
        value = tls.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            tls[key] = str(folder / value)


def validate_config(data: dict[str, Any], where: str = "config") -> LookoutConfig:
    try:
        return LookoutConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line: the first error's dotted key, the file, and what was expected. The value is shown
    only where it is not a secret (and then redacted); a rule's own message names what it checked."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p, err)]
    key = ".".join(loc) or "(root)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        msg = f"unknown key '{key}'"
    elif err["type"] == "union_tag_invalid" and isinstance(err.get("input"), dict):
        msg = (
            f"key '{key}.type' is {err['input'].get('type')!r}; expected one of {err['ctx']['expected_tags']}"
        )
    elif err["type"] == "missing":
        msg = f"key '{key}' is required"
    elif err["type"] == "value_error":  # our validators: the message says what is wrong
        msg = f"key '{key}': {err['ctx']['error']}"
    elif SECRET_KEYS & set(loc):
        msg = f"key '{key}': {err['msg']} (value not shown: it is a secret)"
    else:
        msg = f"key '{key}': {err['msg']} (got {err.get('input')!r})"
    return redact(f"{where}: {msg}{more}".replace("\n", " "))


def _is_union_tag(part: Any, err: dict) -> bool:
    # pydantic puts the discriminator value into loc (e.g. runtime.tflite.threads); drop it
    inp_loc = err["loc"]
    idx = inp_loc.index(part)
    return (
        idx > 0
        and isinstance(part, str)
        and inp_loc[idx - 1] in ("runtime", "source", "meter")
        and idx < len(inp_loc) - 1
    )


def _table(node: dict[str, Any], dotted: str, where: str) -> dict[str, Any]:
    """The table at `dotted` under `node` (created empty when absent); ConfigError when the file has
    something else there (`pipeline = 3`), before a flag is merged into it."""
    keys = dotted.split(".")
    for i, k in enumerate(keys):
        value = node.setdefault(k, {})
        if not isinstance(value, dict):
            key, got = ".".join(keys[: i + 1]), reprlib.repr(value)
            raise ConfigError(
                redact(f"{where}: key '{key}' must be a table, not {type(value).__name__} (got {got})")
            )
        node = value
    return node


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    parent, _, key = dotted.rpartition(".")
    (_table(data, parent, where) if parent else data)[key] = value


def to_toml(cfg: LookoutConfig) -> str:
    """Render the effective config as TOML (tables last, None values omitted)."""
    from app.tomlwrite import dump_toml

    return dump_toml(cfg.model_dump(mode="json", exclude_none=True))
