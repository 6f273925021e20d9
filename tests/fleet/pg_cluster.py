"""A throwaway PostgreSQL cluster for one test: initdb in a temp dir, pg_ctl on a free 127.0.0.1 port,
stopped by the postmaster's PID. initdb refuses to run as root, so as root it runs as `postgres`."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from app.telemetry.broker import free_port


def pg_bindir() -> Path | None:
    """Debian keeps initdb/pg_ctl in /usr/lib/postgresql/<major>/bin (not on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).resolve().parent if exe else None


class PgCluster:
    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="lookout-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._user = user
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "lookout", "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"])  # fmt: skip
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=30"
        )
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                   "-w", "-t", "60", "start"])  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.url = f"postgresql://lookout@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True, user=self._user, timeout=120, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {r.stderr[-2000:] or r.stdout[-2000:]}")

    def stop(self) -> None:
        """Fast shutdown of our postmaster by PID, then remove the cluster."""
        try:
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running and not a zombie (the postmaster is not our child: pg_ctl started it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
