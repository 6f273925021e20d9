"""`lookout doctor`: the Edge TPU delegate row probes the configured delegate, as selection does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def test_delegate_row_probes_the_configured_delegate_and_agrees_with_the_fallback(
    lookout_cmd, clean_env, tmp_path: Path
) -> None:
    lib = tmp_path / "libedgetpu-broken.so.1"
    lib.write_bytes(b"not an ELF shared object\n" * 8)  # dlopen refuses it: a delegate that fails to load
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nenabled = false\n[runtime]\ntype = "edgetpu"\ndelegate_path = "{lib}"\n')
    proc = subprocess.run(
        [*lookout_cmd, "doctor", "--json", "--config", str(cfg)],
        capture_output=True, text=True, env=clean_env, timeout=300,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    checks = {(c["area"], c["name"]): c for c in out["checks"]}
    delegate, fallback = checks[("edgetpu", "delegate")], checks[("pipeline", "fallback")]
    assert delegate["ok"] is False
    assert delegate["detail"].startswith(f"Edge TPU delegate {lib} cannot be loaded"), delegate
    assert fallback["detail"].startswith(f"edgetpu cannot run here, will run tflite: {delegate['detail']}")
