"""The fleet HTTP server in-process: JSON API errors, bearer token, /metrics units, SSE, the bind rule.

The monitor's real ingest path (`Monitor.handle`) fills the registry; a real SQLite history; real HTTP.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.errors import ConfigError
from app.fleet.monitor import Monitor
from app.fleet.registry import Registry
from app.fleet.store import Store
from app.fleet.table import COLUMNS
from app.fleet.web import FleetApp, FleetServer, check_bind, parse_bind
from app.telemetry import contract

TOKEN = "s3cret-token-0123456789"


def metrics(**over: object) -> bytes:
    """A metrics payload built with the device's contract (what a device sends, not a hand-made shape)."""
    m = {
        "ts": time.time(), "fps": 9.5, "latency_ms": {"infer": {"p50": 5.0, "p90": 7.5, "p99": 9.0}},
        "power_w": None, "power_source": "none: no meter", "energy_mj_per_inference": None, "temp_c": 51.0,
        "temps": {"cpu-thermal": 51.0}, "cpu_percent": 30.0, "rss_mb": 100.0, "dropped_frames": 0,
        "spool_depth": 2, "spool_dropped": 0, "runtime": "tflite", "model": "blazeface-short", "throttled": None,
        "reasons": {},
    }  # fmt: skip
    m.update(over)
    return contract.build("metrics", m).to_json()


def feed(mon: Monitor) -> None:
    now = time.time()
    status = contract.Status(state="online", version="0.1.0", runtime="tflite", model="blazeface-short",
                             fallback=None, board=None, started_at=now, ts=now).to_json()  # fmt: skip
    for dev in ("cam-a", "cam-b"):
        mon.handle(f"lookout/{dev}/status", status, now)
    mon.handle("lookout/cam-a/metrics", metrics(), now)
    measured = metrics(
        power_w=3.2,
        power_source="hwmon:ina219",
        energy_mj_per_inference=24.0,
        throttled=contract.Throttling.from_register(0x5),
    )  # under-voltage + throttled now
    mon.handle("lookout/cam-b/metrics", measured, now)
    for seq in (1, 2, 5):
        det = contract.Detections(seq=seq, ts=now, frame=seq, model="blazeface-short", runtime="tflite",
                                  detections=[], latency_ms={"infer": 7.0})  # fmt: skip
        mon.handle("lookout/cam-b/detections", det.to_json(), now)
    mon.handle("lookout/cam-b/metrics", b"{not json", now)
    mon.flush_history()


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[FleetServer, Monitor]]:
    token = getattr(request, "param", None)
    store = Store(tmp_path / "h.sqlite", monitor="test")
    mon = Monitor(Registry(), store=store)
    feed(mon)
    app = FleetApp(mon.registry, mon.stats.as_dict, store, token=token, refresh_s=0.2)
    srv = FleetServer(app, "127.0.0.1", 0).start()
    try:
        yield srv, mon
    finally:
        srv.close()
        store.close()


def get(url: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_api_devices_is_the_once_json_list_and_bad_input_is_a_clear_4xx(server) -> None:
    srv, mon = server
    status, body, hdr = get(srv.url + "/api/devices")
    rows = json.loads(body)
    assert status == 200 and hdr["Content-Type"] == "application/json"
    expected = mon.registry.snapshot()
    volatile = ("age_s", "detections_per_min", "detection_msgs_per_min")
    assert [{k: v for k, v in r.items() if k not in volatile} for r in rows] == [
        {k: v for k, v in r.items() if k not in volatile} for r in expected
    ]
    one = json.loads(get(srv.url + "/api/devices/cam-b")[1])
    assert one["device_id"] == "cam-b" and one["seq_gaps"] == 2 and one["bench"] is None
    hist = json.loads(get(srv.url + "/api/devices/cam-b/history?since=1h")[1])
    assert hist["rows_total"] == 1 and hist["monitors"] == ["test"] and hist["rows"][0]["power_w"] == 3.2

    for path, code, words in (
        ("/api/devices/nope", 404, "unknown device 'nope'"),
        ("/api/devices/nope/history", 404, "unknown device 'nope'"),
        ("/api/devices/cam-a/history?since=soon", 400, "since='soon': expected a duration"),
        ("/api/devices/cam-a/history?since=-1h", 400, "since='-1h'"),
        ("/api/devices/cam-a/history?since=400d", 400, "since='400d'"),
        ("/api/devices?sort=colour", 400, "sort 'colour'"),
        ("/api/nothing", 404, "no API endpoint"),
    ):
        status, body, hdr = get(srv.url + path)
        err = json.loads(body)
        assert status == code and hdr["Content-Type"] == "application/json", path
        assert words in err["error"] and err["status"] == code and "\n" not in err["error"], (path, err)
    status, body, _ = get(srv.url + "/devices/nope")
    assert status == 404 and b"unknown device" in body
    assert get(srv.url + "/api/devices", data=b"x")[0] == 405


def test_metrics_are_in_base_units_and_power_only_where_measured(server) -> None:
    srv, _ = server
    status, body, _ = get(srv.url + "/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    by_dev = {
        name: {s.labels["device_id"]: s for s in f.samples if "device_id" in s.labels}
        for name, f in fams.items()
    }
    assert by_dev["lookout_device_inference_p90_seconds"]["cam-a"].value == pytest.approx(0.0075)
    assert by_dev["lookout_device_rss_bytes"]["cam-a"].value == pytest.approx(100e6)
    assert by_dev["lookout_device_temperature_celsius"]["cam-a"].value == 51.0
    power = by_dev["lookout_device_power_watts"]
    assert set(power) == {"cam-b"} and power["cam-b"].value == 3.2
    assert power["cam-b"].labels["power_source"] == "hwmon:ina219"
    assert by_dev["lookout_device_energy_per_inference_joules"]["cam-b"].value == pytest.approx(0.024)
    assert by_dev["lookout_device_throttled"] == {"cam-b": by_dev["lookout_device_throttled"]["cam-b"]}
    assert by_dev["lookout_device_seq_gaps"]["cam-b"].value == 2
    assert fams["lookout_device_seq_gaps"].type == "counter"
    assert {s.labels["device_id"]: s.value for s in fams["lookout_device_online"].samples} == {
        "cam-a": 1,
        "cam-b": 1,
    }
    received = {s.labels["kind"]: s.value for s in fams["lookout_fleet_messages_received"].samples}
    assert received == {"bench": 0, "detections": 3, "metrics": 2, "status": 2} | dict.fromkeys(
        ("events", "presence", "snapshot"), 0
    )
    assert fams["lookout_fleet_history_rows"].samples[0].value == 2


def test_live_events_carry_the_terminal_views_columns(server) -> None:
    srv, _ = server
    with urllib.request.urlopen(srv.url + "/events?sort=gaps", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        while not any(line.startswith(b"data: ") for line in lines):
            lines.append(r.readline())
    view = json.loads(next(line for line in lines if line.startswith(b"data: "))[6:])
    assert view["online"] == 2 and view["total"] == 2
    assert [r["id"] for r in view["rows"]] == ["cam-b", "cam-a"]  # sorted by seq gaps, like --sort gaps
    assert all(len(r["cells"]) == len(COLUMNS) for r in view["rows"])
    assert view["counts"] == {"throttled": 1, "under-voltage": 1}
    page = get(srv.url + "/")[1].decode()
    for col in COLUMNS:
        assert f">{col.header}" in page


@pytest.mark.parametrize("server", [TOKEN], indirect=True)
def test_bearer_token_guards_everything_but_static(server) -> None:
    srv, _ = server
    status, body, hdr = get(srv.url + "/api/devices")
    assert status == 401 and "Bearer" in hdr["WWW-Authenticate"] and b"bearer token" in body
    assert get(srv.url + "/metrics")[0] == 401
    assert get(srv.url + "/api/devices", {"Authorization": "Bearer wrong-token-xxxxxxxx"})[0] == 401
    assert get(srv.url + "/api/devices", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get(srv.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get(srv.url + "/static/fleet.css")[0] == 200
    status, body, _ = get(srv.url + "/")
    assert status == 401 and b"name='token'" in body and b"cam-a" not in body
    assert get(srv.url + "/login", data=b"token=nope")[0] == 401
    status, _, hdr = get(srv.url + "/login", data=f"token={TOKEN}".encode())
    assert status == 303 and "HttpOnly" in hdr["Set-Cookie"] and "SameSite=Strict" in hdr["Set-Cookie"]
    assert TOKEN not in hdr["Set-Cookie"]
    cookie = hdr["Set-Cookie"].split(";")[0]
    status, body, hdr = get(srv.url + "/", {"Cookie": cookie})
    assert status == 200 and b"cam-a" in body
    assert "script-src 'self'" in hdr["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("bind", "ok"),
    [("127.0.0.1:8080", True), ("localhost:1", True), ("[::1]:8080", True), ("0.0.0.0:8080", False)],
)
def test_only_loopback_binds_without_a_token(bind: str, ok: bool) -> None:
    host, port = parse_bind(bind)
    if ok:
        check_bind(host, port, None)
    else:
        with pytest.raises(ConfigError, match="--auth-token-file"):
            check_bind(host, port, None)
    check_bind(host, port, TOKEN)


def test_serve_refuses_a_public_bind_without_a_token_in_one_line(
    lookout_cmd, clean_env, tmp_path: Path
) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    for extra, words in (
        ([], "--auth-token-file"),
        (["--auth-token-file", str(short)], "at least 16 characters"),
        (["--auth-token-file", str(tmp_path / "missing")], "cannot read a token"),
    ):
        r = subprocess.run(
            [*lookout_cmd, "fleet", "serve", "--http", "0.0.0.0:0", "--broker", "mqtt://127.0.0.1:1", *extra],
            capture_output=True, text=True, env=clean_env, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    r = subprocess.run(
        [*lookout_cmd, "fleet", "serve", "--http", "nonsense", "--broker", "mqtt://127.0.0.1:1"],
        capture_output=True, text=True, env=clean_env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr and r.stderr.count("\n") == 1


def test_grafana_dashboard_queries_only_exported_series(server, repo_root: Path) -> None:
    srv, _ = server
    body = get(srv.url + "/metrics")[1].decode()
    names = set()
    for f in text_string_to_metric_families(body):
        names |= {s.name for s in f.samples}
    dash = json.loads((repo_root / "docs" / "grafana-fleet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    import re

    used = {m for e in exprs for m in re.findall(r"\b(lookout_[a-z0-9_]+)", e)}
    assert used and used <= names, sorted(used - names)
