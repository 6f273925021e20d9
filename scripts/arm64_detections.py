"""What scripts/arm64_check.py compares: real photos, run configs, the detections each run publishes over
MQTT, and the rule that a Pi's detections match this host's (count per frame, score, box)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from arm64_steps import Failure

MODEL = "blazeface-short"
SCORE_TOL, BOX_TOL_PX = 1e-3, 1.0
# the other zoo models' fp32 .pte: ExecuTorch 1.0.1's XNNPACK on Arm vs 1.5.1's on x86 sum in another order;
# measured on the person detector (its box comes from two keypoints, so differences grow): score 4.3e-3, 1.4 px
ZOO_SCORE_TOL, ZOO_BOX_TOL_PX = 1e-2, 3.0


def write_photos(folder: Path) -> int:
    """Real photos: the shipped three, demo frames (the astronaut panned and zoomed) and a mosaic of
    four astronauts at different scales (several faces in one frame). Returns the number written."""
    import cv2
    import numpy as np

    from app.vision import demo, photos

    folder.mkdir(parents=True, exist_ok=True)
    images = {name: photos.photo(name) for name in photos.NAMES}
    for i in (0, 45, 90, 135):
        images[f"demo-{i:03d}"] = demo.demo_frame(i)
    astro = photos.photo("astronaut")
    mosaic = np.full((480, 640, 3), 40, np.uint8)
    for (x, y), size in zip(((0, 0), (320, 0), (0, 240), (330, 250)), (320, 240, 200, 160), strict=True):
        tile = cv2.resize(astro, (size, size), interpolation=cv2.INTER_AREA)
        h, w = min(size, 480 - y), min(size, 640 - x)
        mosaic[y : y + h, x : x + w] = tile[:h, :w]
    images["mosaic"] = mosaic
    for name, img in images.items():
        if not cv2.imwrite(str(folder / f"{name}.png"), img):
            raise Failure(f"cannot write {folder}/{name}.png")
    folder.chmod(0o755)
    for p in folder.iterdir():
        p.chmod(0o644)
    return len(images)


def config_text(
    device_id: str, broker_port: int, runtime: str, artifact: str | None, source: str, model: str = MODEL
) -> str:
    from app.tomlwrite import toml_value

    lines = [
        f"device_id = {toml_value(device_id)}",
        f"model = {toml_value(model)}",
        "[runtime]",
        f"type = {toml_value(runtime)}",
        "threads = 2",
        *([f"artifact = {toml_value(artifact)}"] if artifact else []),
        "[source]",
        *(
            ['type = "opencv"', 'uri = "demo"']
            if source == "demo"
            else ['type = "images"', f"folder = {toml_value(source)}", "loop = false"]
        ),
        "[pipeline]",
        "warmup = 1",
        "[meter]",
        'type = "none"',
        "[mqtt]",
        f'url = "mqtt://127.0.0.1:{broker_port}"',
        "publish_empty = true",
        "homeassistant = false",
    ]
    return "\n".join(lines) + "\n"


class Collector:
    """Every detections message on the broker, by device id (lookout/<id>/detections)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.by_device: dict[str, dict[int, dict]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="arm64-check")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("lookout/+/detections", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        device = msg.topic.split("/")[1]
        body = json.loads(msg.payload)
        with self.lock:
            self.by_device.setdefault(device, {})[int(body["frame"])] = body

    def frames(self, device: str, expected: int, timeout_s: float = 20.0) -> dict[int, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                got = dict(self.by_device.get(device, {}))
            if len(got) >= expected:
                return got
            time.sleep(0.1)
        raise Failure(f"{device}: {len(got)} of {expected} detection messages reached the broker")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def compare(
    host: dict[int, dict], dev: dict[int, dict], what: str, tol: tuple[float, float] = (SCORE_TOL, BOX_TOL_PX)
) -> tuple[int, float, float]:
    """Each frame: same number of detections; each detection matched by IoU with score and every box
    coordinate within `tol` (default 1e-3 and 1 px). Returns (detections, max |score diff|, max box diff px);
    raises Failure naming the first mismatch and how many frames differ."""
    from app.detection import Detection, iou

    if sorted(host) != sorted(dev):
        raise Failure(f"{what}: frames differ: host {sorted(host)} vs device {sorted(dev)}")
    n, worst_score, worst_box, bad = 0, 0.0, 0.0, []
    for frame in sorted(host):
        a = [Detection(d["label"], d["score"], tuple(d["box"])) for d in host[frame]["detections"]]
        b = [Detection(d["label"], d["score"], tuple(d["box"])) for d in dev[frame]["detections"]]
        if len(a) != len(b):
            bad.append(f"frame {frame}: {len(a)} detections on this host, {len(b)} on the Pi")
            continue
        left = list(b)
        for d in a:
            m = max(left, key=lambda e, d=d: iou(d.box, e.box))
            left.remove(m)
            ds = abs(d.score - m.score)
            db = max(abs(p - q) for p, q in zip(d.box, m.box, strict=True))
            worst_score, worst_box = max(worst_score, ds), max(worst_box, db)
            n += 1
            if d.label != m.label or ds > tol[0] or db > tol[1]:
                bad.append(
                    f"frame {frame}: host {d.label} {d.score:.4f} {fmt_box(d.box)} vs "
                    f"Pi {m.label} {m.score:.4f} {fmt_box(m.box)}"
                )
    if bad:
        raise Failure(
            f"{what}: {len(bad)} mismatches (max |score diff| {worst_score:.1e}, box {worst_box:.1f} px), first {bad[0]}"
        )
    return n, worst_score, worst_box


def fmt_box(box: tuple) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box) + ")"
