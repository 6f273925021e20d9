#!/usr/bin/env python3
"""`make arm64-check`: install lookout on an emulated Raspberry Pi as its owner would, run it, and
compare every detection with the same run on this host. Prints one verdict line; exit 0 = pass.

1. A Debian bookworm arm64 root (scripts/arm64_pi.sh: built once with debootstrap, then a cached
   tarball outside the clone), fresh for each check; this checkout's files in /home/pi/lookout.
2. `device/install.sh --config FILE` as root, as docs/deploy.md tells a Pi owner. systemd is
   installed but not running, so the unit must be enabled without being started.
3. As the `lookout` user with lookout.service's User=, groups, Environment=, state/cache directories
   and UMask=: `lookout doctor` must say the configured pipeline can run; then `lookout run` on real
   photos with tflite and tflite-int8 (QEMU_CPU=cortex-a72, a Pi 4's core), publishing to a mosquitto
   on this host, like the same runs on this host; each detection must match (same count per frame,
   score within 1e-3, box within 1 px).
4. ARM64_TORCH=1 adds `install.sh --torch` on the same root: a CPU-only torch, no nvidia-*/triton, a
   venv under 1.5 GB, doctor naming the versions, and executorch and torchscript-lite runs on
   cortex-a72 (Pi 4) and cortex-a76 (Pi 5) compared with this host.

Every emulated step has a timeout; every mount lives in a private mount namespace of its step
(scripts/arm64_pi.sh), so none survives a failure or Ctrl-C. Environment: ARM64_TORCH=1;
ARM64_FRESH=1 builds the device venv from scratch (by default a venv cached after a fresh install
with the same pyproject.toml, constraints.txt and root is reused, and install.sh reinstalls the
project into it); ARM64_CACHE=DIR (default ~/.cache/lookout/arm64); ARM64_KEEP=1 keeps the work
folder. The full log is ARM64_CACHE/last-check.log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PI = REPO / "scripts" / "arm64_pi.sh"
CACHE = Path(
    os.environ.get("ARM64_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookout" / "arm64"
)
CHECKOUT = "/home/pi/lookout"  # where a Pi owner clones
PHOTOS = "/home/pi/photos"
RUNS = "/home/pi/runs"
SCORE_TOL, BOX_TOL_PX = 1e-3, 1.0
VENV_LIMIT_BYTES = 1_500_000_000
MODEL = "blazeface-short"
TIMEOUT = {"root": 1800, "install": 1500, "install-torch": 2700, "doctor": 900, "run": 900, "host": 300}


class Failure(Exception):
    """A check failed: the message is the verdict's reason (one line)."""


@dataclass
class Log:
    path: Path
    t0: float = field(default_factory=time.monotonic)

    def write(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def step(self, text: str) -> None:
        line = f"arm64-check: [{time.monotonic() - self.t0:6.1f} s] {text}"
        print(line, file=sys.stderr, flush=True)
        self.write(line)


class Runner:
    """Runs commands in their own process group with a timeout; kill_all() ends every one still running."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.procs: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run(
        self,
        name: str,
        argv: list[str],
        timeout: float,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        self.log.write(f"$ [{name}] {shlex.join(argv)}")
        p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        with self.lock:
            self.procs.add(p)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out = p.communicate()[0] if p.stdout else ""
            self.log.write(out or "")
            raise Failure(f"{name}: no result within {timeout:.0f} s (killed)") from None
        finally:
            with self.lock:
                self.procs.discard(p)
        self.log.write(out)
        if check and p.returncode != 0:
            raise Failure(f"{name}: exit {p.returncode}: {last_line(out)}")
        return subprocess.CompletedProcess(argv, p.returncode, out, "")

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            kill_group(p)


def kill_group(p: subprocess.Popen) -> None:
    """TERM, then KILL after 10 s, to the process group (the emulated processes are in it too)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return lines[-1][:300] if lines else "(no output)"


def sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


# --- the device side -------------------------------------------------------------------------------
@dataclass
class Unit:
    """What lookout.service gives its process, read from the installed unit file."""

    user: str
    exec_start: list[str]
    env: dict[str, str]
    umask: str
    dirs: dict[str, tuple[str, str]]  # env var -> (path, mode)

    @classmethod
    def read(cls, path: Path) -> Unit:
        keys: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
                k, v = line.split("=", 1)
                keys.setdefault(k.strip(), []).append(v.strip())
        env: dict[str, str] = {}
        for value in keys.get("Environment", []):
            for word in shlex.split(value):
                k, v = word.split("=", 1)
                env[k] = v
        dirs = {}
        for kind, var, base in (
            ("StateDirectory", "STATE_DIRECTORY", "/var/lib"),
            ("CacheDirectory", "CACHE_DIRECTORY", "/var/cache"),
            ("ConfigurationDirectory", "CONFIGURATION_DIRECTORY", "/etc"),
        ):
            if kind in keys:
                dirs[var] = (f"{base}/{keys[kind][-1]}", keys.get(f"{kind}Mode", ["0755"])[-1])
        return cls(
            user=keys["User"][-1],
            exec_start=shlex.split(keys["ExecStart"][-1]),
            env=env,
            umask=keys.get("UMask", ["0022"])[-1],
            dirs=dirs,
        )


def passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise Failure(f"install.sh did not create the user {user!r}")


class Pi:
    """A fresh arm64 root in a work folder, entered through scripts/arm64_pi.sh."""

    def __init__(self, runner: Runner, work: Path) -> None:
        self.runner = runner
        self.root = work / "root"

    def enter(
        self, name: str, cmd: list[str], timeout: float, cpu: str = "cortex-a72", user: str | None = None,
        env: dict[str, str] | None = None, umask: str | None = None, check: bool = True,
    ) -> subprocess.CompletedProcess:  # fmt: skip
        argv = ["bash", str(PI), "enter", "--cpu", cpu]
        if user:
            argv += ["--user", user]
        if umask:
            argv += ["--umask", umask]
        for k, v in (env or {}).items():
            argv += ["--env", f"{k}={v}"]
        return self.runner.run(name, [*argv, str(self.root), "--", *cmd], timeout, check=check)

    def as_service(self, unit: Unit, name: str, args: list[str], timeout: float, cpu: str) -> Any:
        """The unit's ExecStart program with `args`, as its user, with its environment."""
        env = {**unit.env, **{var: path for var, (path, _) in unit.dirs.items()}}
        return self.enter(
            name, [unit.exec_start[0], *args], timeout, cpu=cpu, user=unit.user, env=env, umask=unit.umask
        )

    def service_dirs(self, unit: Unit) -> None:
        """What systemd does before ExecStart: StateDirectory=, CacheDirectory= owned by the user."""
        uid, gid = passwd_ids(self.root, unit.user)
        for var, (path, mode) in unit.dirs.items():
            d = self.root / path.lstrip("/")
            d.mkdir(parents=True, exist_ok=True)
            if var != "CONFIGURATION_DIRECTORY":  # /etc/lookout stays root-owned
                os.chown(d, uid, gid)
                d.chmod(int(mode, 8))


# --- photos, configs, detections -------------------------------------------------------------------
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


def config_text(device_id: str, broker_port: int, runtime: str, artifact: str | None, source: str) -> str:
    from app.tomlwrite import toml_value

    lines = [
        f"device_id = {toml_value(device_id)}",
        f"model = {toml_value(MODEL)}",
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


def compare(host: dict[int, dict], dev: dict[int, dict], what: str) -> tuple[int, float, float]:
    """Each frame: same number of detections; each detection matched by IoU with score within 1e-3
    and every box coordinate within 1 px. Returns (detections, max |score diff|, max box diff px);
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
            if d.label != m.label or ds > SCORE_TOL or db > BOX_TOL_PX:
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


# --- the check ---------------------------------------------------------------------------------------
class Check:
    def __init__(self, log: Log, runner: Runner, work: Path, torch: bool, fresh: bool) -> None:
        self.log, self.runner, self.work = log, runner, work
        self.torch, self.fresh = torch, fresh
        self.pi = Pi(runner, work)
        self.notes: list[str] = []
        self.broker: Any = None
        self.collector: Collector | None = None
        self.unit: Unit | None = None
        self.n_photos = 0

    # 1. the root
    def make_root(self) -> None:
        self.log.step("the arm64 root: the cached tarball, or debootstrap under qemu (about 5 min) if none")
        out = self.runner.run("root", ["bash", str(PI), "root"], TIMEOUT["root"]).stdout
        self.tarball = Path(out.strip().splitlines()[-1])
        self.pi.root.mkdir(parents=True)
        t = time.monotonic()
        self.runner.run(
            "extract root",
            ["bash", "-c", 'zstd -dc "$1" | tar --numeric-owner -xpf - -C "$2"', "x", str(self.tarball), str(self.pi.root)],
            300,
        )  # fmt: skip
        files = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout.split(b"\0")  # fmt: skip
        dest = self.pi.root / CHECKOUT.lstrip("/")
        for rel in filter(None, files):
            src = REPO / os.fsdecode(rel)
            if src.is_file() or src.is_symlink():
                (dest / os.fsdecode(rel)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / os.fsdecode(rel), follow_symlinks=False)
        self.log.step(f"root {self.tarball.name} unpacked with the checkout in {time.monotonic() - t:.0f} s")

    # 2. install.sh
    def venv_cache(self, extras: str) -> Path:
        key = sha256_files([REPO / "pyproject.toml", REPO / "constraints.txt"]) + self.tarball.name
        return CACHE / f"venv-{extras}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.tar.zst"

    def install(self, torch: bool) -> None:
        extras = "torch" if torch else "litert"
        cached = self.venv_cache(extras)
        venv = self.pi.root / "opt/lookout/venv"
        reused = cached.is_file() and not self.fresh and not venv.exists()
        if reused:
            venv.parent.mkdir(parents=True, exist_ok=True)
            self.runner.run(
                "restore venv",
                ["bash", "-c", 'zstd -dc "$1" | tar --numeric-owner -xpf - -C "$2"', "x", str(cached), str(venv.parent)],
                300,
            )  # fmt: skip
        args = ["device/install.sh", "--config", f"{RUNS}/device.toml", *(["--torch"] if torch else [])]
        t = time.monotonic()
        out = self.pi.enter(
            "install.sh" + (" --torch" if torch else ""),
            ["bash", "-c", f"cd {CHECKOUT} && {shlex.join(args)}"],
            TIMEOUT["install-torch" if torch else "install"],
        ).stdout
        took = time.monotonic() - t
        if "enabled lookout.service without starting it" not in out:
            raise Failure("install.sh: no line saying lookout.service was enabled and not started")
        wants = self.pi.root / "etc/systemd/system/multi-user.target.wants/lookout.service"
        if os.readlink(wants) != "/etc/systemd/system/lookout.service":
            raise Failure("install.sh: lookout.service is not enabled")
        self.check_installed_code()
        how = "into the cached venv" if reused else "fresh"
        self.log.step(f"install.sh{' --torch' if torch else ''} ({how}) passed in {took:.0f} s")
        self.notes.append(
            f"install{'-torch' if torch else ''} {took:.0f}s {'cached-venv' if reused else 'fresh'}"
        )
        if not reused and not cached.exists():
            tmp = cached.with_suffix(".part")
            self.runner.run(
                "save venv",
                ["bash", "-c", 'tar --numeric-owner -C "$1" -cf - venv | zstd -q -T0 -3 -o "$2"', "x", str(venv.parent), str(tmp)],
                600,
            )  # fmt: skip
            for old in CACHE.glob(f"venv-{extras}-*.tar.zst"):
                old.unlink()
            tmp.rename(cached)

    def check_installed_code(self) -> None:
        """The venv holds this checkout's app/ (a reused venv must not run an older copy)."""
        site = next((self.pi.root / "opt/lookout/venv/lib").glob("python3*/site-packages"))
        for src in (REPO / "app").rglob("*"):
            if src.suffix not in (".py", ".json", ".png", ".toml") or "__pycache__" in src.parts:
                continue
            installed = site / src.relative_to(REPO)
            if not installed.is_file() or installed.read_bytes() != src.read_bytes():
                raise Failure(f"install.sh: {installed.relative_to(self.pi.root)} is not this checkout's")

    # 3. as the service
    def prepare(self) -> None:
        from app.telemetry.broker import start_broker

        self.broker = start_broker("mosquitto")
        self.collector = Collector(self.broker.port)
        runs = self.pi.root / RUNS.lstrip("/")
        runs.mkdir(parents=True)
        (runs / "device.toml").write_text(
            config_text("arm64-check", self.broker.port, "tflite", None, "demo")
        )
        self.n_photos = write_photos(self.pi.root / PHOTOS.lstrip("/"))

    def service_ready(self) -> None:
        self.unit = Unit.read(self.pi.root / "etc/systemd/system/lookout.service")
        if self.unit.exec_start[1:3] != ["run", "--config"]:
            raise Failure(f"lookout.service ExecStart is not 'lookout run --config': {self.unit.exec_start}")
        self.pi.service_dirs(self.unit)
        runs = self.pi.root / RUNS.lstrip("/")
        runs.chmod(0o755)
        for p in runs.iterdir():
            p.chmod(0o644)

    def demo_cache(self) -> tuple[Path, Path]:
        """(the demo video in the Pi's cache directory, its copy in CACHE). The copy is keyed by the
        code that makes the video, so a change to it makes the Pi generate the video again."""
        from app.vision.demo import recipe_hash

        assert self.unit is not None
        name = f"demo-{recipe_hash()}.mp4"
        code = sha256_files(
            [REPO / "app/vision/demo.py", *sorted((REPO / "app/vision/photos").glob("*.png"))]
        )
        if not self.unit.env.get("XDG_CACHE_HOME"):
            raise Failure("lookout.service sets no XDG_CACHE_HOME: where would the demo video go?")
        on_pi = self.pi.root / self.unit.env["XDG_CACHE_HOME"].lstrip("/") / "lookout" / name
        return on_pi, CACHE / f"pi-{code}-{name}"

    def doctor(self, want_ok: list[str]) -> dict[str, dict]:
        assert self.unit is not None
        config = self.unit.exec_start[3]
        on_pi, cached = self.demo_cache()
        made_here = not cached.is_file()
        if not made_here:  # the demo video the Pi made in an earlier check (as a Pi keeps it)
            on_pi.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, on_pi)
            uid, gid = passwd_ids(self.pi.root, self.unit.user)
            for p in (on_pi, on_pi.parent):
                os.chown(p, uid, gid)
        t = time.monotonic()
        proc = self.pi.as_service(
            self.unit, "doctor", ["doctor", "--json", "--config", config], TIMEOUT["doctor"], "cortex-a72"
        )
        self.notes.append(
            f"doctor {time.monotonic() - t:.0f}s (demo video {'made' if made_here else 'cached'})"
        )
        if made_here and on_pi.is_file():
            for old in CACHE.glob("pi-*-demo-*.mp4"):
                old.unlink()
            shutil.copyfile(on_pi, cached)
        body = proc.stdout[proc.stdout.index("{") :]
        result = json.loads(body[: body.rindex("}") + 1])
        checks = {f"{c['area']}:{c['name']}": c for c in result["checks"]}
        bad = [
            f"{k} ({checks[k]['detail']})" if k in checks else f"{k} (missing)"
            for k in want_ok
            if not checks.get(k, {}).get("ok")
        ]
        if not any(c["ok"] for c in result["checks"] if c["area"] == "broker"):
            bad.append("broker (this host's mosquitto not reachable from the Pi)")
        if not result["can_run"] or bad:
            raise Failure(f"doctor on the Pi: not ok: {'; '.join(bad) or 'the pipeline cannot run'}")
        return checks

    def host_run(self, name: str, runtime: str, artifact: str | None) -> dict[int, dict]:
        assert self.broker is not None and self.collector is not None
        d = self.work / "host" / name
        d.mkdir(parents=True)
        cfg = d / "config.toml"
        photos = str(self.pi.root / PHOTOS.lstrip("/"))
        cfg.write_text(config_text(f"host-{name}", self.broker.port, runtime, artifact, photos))
        env = {**os.environ, "XDG_STATE_HOME": str(d / "state"), "XDG_CACHE_HOME": str(d / "cache")}
        env.pop("LOOKOUT_CONFIG", None)
        env.pop("LOOKOUT_MODELS_DIR", None)
        argv = [
            str(REPO / ".venv/bin/lookout"),
            "run",
            "--config",
            str(cfg),
            "--report",
            str(d / "report.json"),
        ]
        self.runner.run(f"host run {name}", argv, TIMEOUT["host"], env=env)
        report = json.loads((d / "report.json").read_text())
        self.check_report(report, runtime, f"host {name}")
        return self.collector.frames(f"host-{name}", self.n_photos)

    def pi_run(self, name: str, runtime: str, artifact: str | None, cpu: str) -> tuple[dict[int, dict], dict]:
        assert self.unit is not None and self.broker is not None and self.collector is not None
        device = f"pi-{cpu}-{name}"
        cfg = self.pi.root / RUNS.lstrip("/") / f"{device}.toml"
        cfg.write_text(config_text(device, self.broker.port, runtime, artifact, PHOTOS))
        cfg.chmod(0o644)
        state = self.unit.dirs["STATE_DIRECTORY"][0]
        report_path = f"{state}/report-{device}.json"
        t = time.monotonic()
        self.pi.as_service(
            self.unit, f"pi run {device}", ["run", "--config", f"{RUNS}/{device}.toml", "--report", report_path],
            TIMEOUT["run"], cpu,
        )  # fmt: skip
        took = time.monotonic() - t
        report = json.loads((self.pi.root / report_path.lstrip("/")).read_text())
        self.check_report(report, runtime, device)
        report["_took_s"] = took
        return self.collector.frames(device, self.n_photos), report

    def check_report(self, report: dict, runtime: str, what: str) -> None:
        if report["runtime"] != runtime or report.get("fallback"):
            raise Failure(
                f"{what}: ran on {report['runtime']} (fallback {report.get('fallback')}), not {runtime}"
            )
        if report["frames"] != self.n_photos or report["errors"] or report["dropped_frames"]:
            raise Failure(
                f"{what}: {report['frames']}/{self.n_photos} frames, {report['errors']} errors, "
                f"{report['dropped_frames']} dropped ({report.get('last_error')})"
            )

    def agree(self, runtime: str, artifact: str | None, cpus: list[str]) -> None:
        name = artifact or runtime
        host = self.host_run(name, runtime, artifact)
        for cpu in cpus:
            dev, report = self.pi_run(name, runtime, artifact, cpu)
            n, ds, db = compare(host, dev, f"{name} on {cpu}")
            infer = report["stages"].get("infer", {}).get("p50_ms")
            self.log.step(
                f"{name} on {cpu}: {self.n_photos} photos, {n} detections match this host "
                f"(max |score diff| {ds:.1e}, max box diff {db:.2f} px; emulated infer p50 {infer} ms)"
            )
            self.notes.append(f"{name}@{cpu.replace('cortex-', '')} {n} det ok")

    # 4. torch
    def torch_facts(self) -> None:
        venv = self.pi.root / "opt/lookout/venv"
        code = (
            "import json, importlib.metadata as m\n"
            "d = {x.metadata['Name'].lower(): x.version for x in m.distributions()}\n"
            "import torch\n"
            "print(json.dumps({'dists': d, 'cuda': torch.version.cuda, 'cuda_built': torch.backends.cuda.is_built()}))"
        )
        out = self.pi.enter("torch facts", ["/opt/lookout/venv/bin/python", "-c", code], 600).stdout
        facts = json.loads(out.strip().splitlines()[-1])
        gpu = sorted(
            d for d in facts["dists"] if d.startswith("nvidia-") or d in ("triton", "pytorch-triton")
        )
        if gpu:
            raise Failure(f"install.sh --torch on aarch64 installed GPU packages: {', '.join(gpu)}")
        if facts["cuda"] or facts["cuda_built"]:
            raise Failure(f"torch {facts['dists'].get('torch')} on the Pi is a CUDA build ({facts['cuda']})")
        size = int(subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True).stdout.split()[0])
        if size >= VENV_LIMIT_BYTES:
            raise Failure(f"the device venv with --torch is {size / 1e9:.2f} GB (limit 1.5 GB)")
        torch_v, et_v = facts["dists"].get("torch"), facts["dists"].get("executorch")
        self.log.step(
            f"torch {torch_v} (CPU only, no nvidia-*/triton), executorch {et_v}, venv {size / 1e6:.0f} MB"
        )
        self.notes.append(f"venv-torch {size / 1e6:.0f}MB torch {torch_v} et {et_v}")

    def run(self) -> None:
        self.make_root()
        self.prepare()
        self.install(torch=False)
        self.service_ready()
        lite = self.pi.root / "opt/lookout/venv"
        size = int(subprocess.run(["du", "-sb", str(lite)], capture_output=True, text=True).stdout.split()[0])
        self.notes.append(f"venv {size / 1e6:.0f}MB")
        checks = self.doctor(["runtime:tflite", "pipeline:source", "pipeline:artifact"])
        self.log.step(
            f"doctor as lookout: {checks['runtime:tflite']['detail']}; {checks['pipeline:source']['detail']}"
        )
        self.agree("tflite", None, ["cortex-a72"])
        self.agree("tflite", "tflite-int8", ["cortex-a72"])
        if self.torch:
            self.install(torch=True)
            self.torch_facts()
            checks = self.doctor(["runtime:executorch", "runtime:torchscript-lite"])
            for rt in ("executorch", "torchscript-lite"):
                self.log.step(f"doctor as lookout: {rt}: {checks[f'runtime:{rt}']['detail']}")
            self.agree("executorch", None, ["cortex-a72", "cortex-a76"])
            self.agree("torchscript-lite", None, ["cortex-a72", "cortex-a76"])
        out = subprocess.run(
            ["systemctl", f"--root={self.pi.root}", "is-enabled", "lookout.service"], capture_output=True, text=True, timeout=60
        ).stdout.strip()  # fmt: skip
        if out != "enabled":
            raise Failure(f"systemctl --root says lookout.service is {out!r}, not enabled")

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.broker is not None:
            self.broker.stop()


def mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(prefix)]


def main() -> int:
    if os.geteuid() != 0:
        print("arm64-check: FAIL — needs root (binfmt_misc, chroot, mounts): sudo make arm64-check")
        return 2
    torch = os.environ.get("ARM64_TORCH", "") not in ("", "0")
    fresh = os.environ.get("ARM64_FRESH", "") not in ("", "0")
    CACHE.mkdir(parents=True, exist_ok=True)
    log = Log(CACHE / "last-check.log")
    log.path.write_text(f"arm64-check {time.strftime('%Y-%m-%d %H:%M:%S')} torch={torch} fresh={fresh}\n")
    work = Path(tempfile.mkdtemp(prefix="check.", dir=CACHE))
    runner = Runner(log)
    check = Check(log, runner, work, torch, fresh)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    verdict, rc = "", 1
    try:
        check.run()
        verdict, rc = "PASS", 0
    except Failure as exc:
        verdict = f"FAIL — {exc}"
    except KeyboardInterrupt as exc:
        verdict, rc = f"INTERRUPTED ({exc or 'SIGINT'})", 130
    finally:
        runner.kill_all()
        check.close()
        left = mounts_under(work)
        if left:  # cannot happen (every mount is in a step's own namespace); never delete through one
            verdict = f"FAIL — mounts left under {work}: {', '.join(left)}"
            rc = 1
        elif os.environ.get("ARM64_KEEP", "") in ("", "0"):
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - t0
    parts = "; ".join(check.notes)
    print(
        f"arm64-check: {verdict} in {took / 60:.1f} min"
        + (f" ({parts})" if parts else "")
        + f"; log {log.path}"
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
