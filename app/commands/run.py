"""`lookout run`: the device service (what systemd starts)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.finite import finite_float
from app.inert import printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the camera inference service", description=__doc__)
    p.add_argument(
        "--config",
        help="TOML config file (default: $LOOKOUT_CONFIG, ./lookout.toml, /etc/lookout/config.toml)",
    )
    p.add_argument(
        "--source",
        help="video file, /dev/videoN, camera index, rtsp:// URL, image folder, 'demo' or 'synthetic'",
    )
    p.add_argument("--model", help="model name in the models directory (see `lookout models list`)")
    p.add_argument("--runtime", help="tflite | edgetpu | executorch | torchscript-lite | onnxruntime")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--fps", type=finite_float, help="cap the capture rate, as a camera's frame rate would")
    p.add_argument("--max-frames", type=int, help="stop after N processed frames")
    p.add_argument("--device-id", help="device id used in MQTT topics (default: hostname)")
    p.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--state-dir", help="where the spool and seq counter live")
    p.add_argument("--models-dir", help="models directory")
    p.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker")
    p.add_argument("--report", help="write the run report (JSON) here at exit")
    p.add_argument("--output", metavar="FILE.jsonl", help="one JSON line per processed frame ('-' = stdout)")
    p.set_defaults(func=run)


def source_override(value: str) -> dict[str, Any]:
    """A --source string as a source config table."""
    if value == "synthetic":
        return {"type": "synthetic"}
    path = Path(value)
    if path.is_dir():
        return {"type": "images", "folder": str(path)}
    if "://" not in value and not value.isdigit() and not value.startswith("/dev/") and value != "demo":
        if not path.exists():
            raise ConfigError(f"--source {printable(value)}: no such file, folder or device")
        return {"type": "opencv", "uri": str(path.resolve()), "loop": False}
    return {"type": "opencv", "uri": value}


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if args.source:
        o["source"] = source_override(args.source)
    if args.model:
        o["model"] = args.model
    if args.runtime:
        o["runtime.type"] = args.runtime
    if args.threads is not None:
        o["runtime.threads"] = args.threads
    if args.fps is not None:
        o["pipeline.fps"] = args.fps
    if args.max_frames is not None:
        o["pipeline.max_frames"] = args.max_frames
    if args.device_id:
        o["device_id"] = args.device_id
    if args.broker:
        o["mqtt.url"] = args.broker
    if args.state_dir:
        o["state_dir"] = args.state_dir
    if args.models_dir:
        o["models_dir"] = args.models_dir
    return o


def run(args: argparse.Namespace) -> int:
    from app.config import load_config
    from app.preflight import preflight
    from app.service import Service, ServiceOptions

    cfg = load_config(args.config, overrides_from_args(args))
    preflight(cfg, mqtt=not args.no_mqtt)  # what `config check` checks too, before the model loads
    opts = ServiceOptions(
        report_path=Path(args.report) if args.report else None, output=args.output, mqtt=not args.no_mqtt
    )
    report = Service(cfg, opts).run()
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("frames", "fps", "runtime", "fallback", "detections_total", "dropped_frames")
            }
        ),
        file=sys.stderr if args.output == "-" else sys.stdout,  # stdout carries the frames then
    )
    return 0
