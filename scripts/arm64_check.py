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
   cortex-a72 (Pi 4) and cortex-a76 (Pi 5) compared with this host; the int8 .pte refused on the
   cortex-a72 (no dot product: the fp32 .pte runs, as on this host) and run on the cortex-a76; and
   every other zoo model's .pte on the cortex-a72.

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
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arm64_detections import (  # noqa: E402
    BOX_TOL_PX,
    MODEL,
    SCORE_TOL,
    ZOO_BOX_TOL_PX,
    ZOO_SCORE_TOL,
    Collector,
    compare,
    config_text,
    write_photos,
)
from arm64_device import PI, Pi, Unit, passwd_ids  # noqa: E402
from arm64_steps import Failure, Log, Runner, sha256_files  # noqa: E402

CACHE = Path(
    os.environ.get("ARM64_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookout" / "arm64"
)
CHECKOUT = "/home/pi/lookout"  # where a Pi owner clones
PHOTOS = "/home/pi/photos"
RUNS = "/home/pi/runs"
VENV_LIMIT_BYTES = 1_500_000_000
ZOO_PTE_MODELS = ("person-detector", "mobilenet-v1-025", "movenet-lightning")  # besides MODEL
TIMEOUT = {"root": 1800, "install": 1500, "install-torch": 2700, "doctor": 900, "run": 900, "host": 300}


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

    def host_run(self, name: str, runtime: str, artifact: str | None, model: str = MODEL) -> dict[int, dict]:
        assert self.broker is not None and self.collector is not None
        d = self.work / "host" / name
        d.mkdir(parents=True)
        cfg = d / "config.toml"
        photos = str(self.pi.root / PHOTOS.lstrip("/"))
        cfg.write_text(config_text(f"host-{name}", self.broker.port, runtime, artifact, photos, model))
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

    def pi_run(
        self, name: str, runtime: str, artifact: str | None, cpu: str, model: str = MODEL, fallback: str = ""
    ) -> tuple[dict[int, dict], dict]:
        """One `lookout run` on the Pi as the service user; `fallback`: a word the expected fallback's
        reason must hold (none expected when empty)."""
        assert self.unit is not None and self.broker is not None and self.collector is not None
        device = f"pi-{cpu}-{name}"
        cfg = self.pi.root / RUNS.lstrip("/") / f"{device}.toml"
        cfg.write_text(config_text(device, self.broker.port, runtime, artifact, PHOTOS, model))
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
        self.check_report(report, runtime, device, fallback)
        report["_took_s"] = took
        return self.collector.frames(device, self.n_photos), report

    def check_report(self, report: dict, runtime: str, what: str, fallback: str = "") -> None:
        got = report.get("fallback")
        if fallback and (not got or fallback not in got["reason"]):
            raise Failure(f"{what}: expected a fallback naming {fallback!r}, got {got}")
        if report["runtime"] != runtime or (got and not fallback):
            raise Failure(
                f"{what}: ran on {report['runtime']} (fallback {report.get('fallback')}), not {runtime}"
            )
        if report["frames"] != self.n_photos or report["errors"] or report["dropped_frames"]:
            raise Failure(
                f"{what}: {report['frames']}/{self.n_photos} frames, {report['errors']} errors, "
                f"{report['dropped_frames']} dropped ({report.get('last_error')})"
            )

    def agree(
        self, runtime: str, artifact: str | None, cpus: list[str], model: str = MODEL, fallback: str = ""
    ) -> None:
        """The Pi's detections on each CPU match this host's. With `fallback` the Pi must refuse `artifact`
        (a reason holding that word) and run the runtime's default artifact, which this host runs too."""
        name = (
            (f"{model}-" if model != MODEL else "") + (artifact or runtime) + ("-refused" if fallback else "")
        )
        host = self.host_run(name, runtime, None if fallback else artifact, model)
        for cpu in cpus:
            dev, report = self.pi_run(name, runtime, artifact, cpu, model, fallback)
            tol = (SCORE_TOL, BOX_TOL_PX) if model == MODEL else (ZOO_SCORE_TOL, ZOO_BOX_TOL_PX)
            n, ds, db = compare(host, dev, f"{name} on {cpu}", tol)
            if fallback:
                self.log.step(f"{name} on {cpu}: refused, fallback to {report['fallback']['to']}: "
                              f"{report['fallback']['reason']}")  # fmt: skip
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
            # the int8 program: refused on a Pi 4's core (no dot product: SIGILL), run on a Pi 5's
            self.agree("executorch", "pte-int8", ["cortex-a72"], fallback="asimddp")
            self.agree("executorch", "pte-int8", ["cortex-a76"])
            for model in ZOO_PTE_MODELS:  # every other zoo .pte loads and agrees on a Pi 4's core
                self.agree("executorch", None, ["cortex-a72"], model=model)
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

    for sig in (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
    ):  # also where a shell started us ignoring SIGINT
        signal.signal(sig, on_signal)
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
