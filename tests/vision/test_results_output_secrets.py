"""`lookout run --output`: a stream URL's password never reaches the JSON lines (app/redact.py's rule)."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

USER, PASSWORD = "viewer", "canary-pw-7f3a"


@pytest.fixture
def http_camera(demo_video: Path) -> Iterator[int]:
    """An HTTP camera on 127.0.0.1 that wants Basic auth and serves ten JPEG frames of the demo video
    (a motion-JPEG stream, readable without seeking); yields its port."""
    cap = cv2.VideoCapture(str(demo_video))
    body = b""
    for _ in range(10):
        ok, frame = cap.read()
        assert ok
        body += cv2.imencode(".jpg", frame)[1].tobytes()
    cap.release()
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_output_lines_mask_the_stream_password(
    lookout_cmd, clean_env, tmp_path: Path, http_camera: int
) -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{http_camera}/cam.mjpeg"
    out = tmp_path / "frames.jsonl"
    proc = subprocess.run(
        [*lookout_cmd, "run", "--source", url, "--runtime", "tflite", "--max-frames", "3", "--no-mqtt",
         "--output", str(out), "--state-dir", str(tmp_path / "state")],
        env=clean_env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3  # the camera took the password: frames were read and written
    assert {rec["source"] for rec in lines} == {f"http://{USER}:***@127.0.0.1:{http_camera}/cam.mjpeg"}
    assert PASSWORD not in out.read_text() + proc.stdout + proc.stderr
