"""Edge TPU: enumeration over fixture sysfs/dev trees, the delegate probe in a child process, CPU fallback."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.errors import RuntimeUnavailable
from app.hostroots import HostRoots
from app.runtimes.edgetpu import (
    EdgeTPUConfig,
    EdgeTPURuntime,
    enumerate_tpus,
    matching,
    parse_device,
    probe_delegate,
)
from app.runtimes.selection import open_runtime

NULL_DELEGATE = """
#include <stddef.h>
void *tflite_plugin_create_delegate(char **k, char **v, size_t n, void (*report)(const char *)) {
    if (report) report("no Edge TPU device found");
    return NULL;
}
void tflite_plugin_destroy_delegate(void *d) { (void)d; }
"""
SEGFAULT_ON_LOAD = """
#include <signal.h>
__attribute__((constructor)) static void boom(void) { raise(SIGSEGV); }
"""
HANG_ON_LOAD = """
#include <unistd.h>
__attribute__((constructor)) static void hang(void) { sleep(60); }
"""
NOT_A_DELEGATE = "int lookout_unrelated(void) { return 1; }\n"


def _usb(root: Path, name: str, vendor: str, product: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "idVendor").write_text(vendor + "\n")
    (d / "idProduct").write_text(product + "\n")


@pytest.fixture
def tpu_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A sysfs usb devices folder with both Coral USB IDs among other devices, and a /dev with apex nodes."""
    sysfs, dev = tmp_path / "sys/bus/usb/devices", tmp_path / "dev"
    _usb(sysfs, "usb1", "1d6b", "0002")  # root hub
    _usb(sysfs, "1-1", "1a6e", "089a")  # Coral USB before firmware load
    _usb(sysfs, "1-2", "046d", "c52b")  # a mouse receiver
    _usb(sysfs, "2-1", "18d1", "9302")  # Coral USB after firmware load
    (sysfs / "1-1:1.0").mkdir()  # an interface: no idVendor
    dev.mkdir()
    for node in ("apex_1", "apex_0", "apex_x", "video0"):
        (dev / node).touch()
    return sysfs, dev


def test_enumerate_fixture_tree(tpu_tree):
    sysfs, dev = tpu_tree
    found = enumerate_tpus(sysfs, dev)
    assert [(d.name, d.state) for d in found] == [
        ("usb:0", "needs-firmware"),
        ("usb:1", "ready"),
        ("pci:0", "ready"),
        ("pci:1", "ready"),
    ]
    assert found[0].path.endswith("1-1") and found[2].path.endswith("apex_0")
    assert [d.name for d in matching(found, "usb")] == ["usb:0", "usb:1"]
    assert [d.name for d in matching(found, "pci:1")] == ["pci:1"]
    assert matching(found, "usb:2") == []
    assert len(matching(found, "")) == 4


def test_enumerate_empty(tmp_path):
    assert enumerate_tpus(tmp_path / "nosys", tmp_path / "nodev") == []


@pytest.mark.parametrize("good", ["", "usb", "usb:0", "usb:12", "pci", "pci:1"])
def test_device_strings_accepted(good):
    EdgeTPUConfig(device=good)
    parse_device(good)


@pytest.mark.parametrize("bad", ["usb0", "USB", "usb:", "pci:-1", "cpu", ":0", "usb:0 "])
def test_device_strings_rejected(bad):
    with pytest.raises(ValidationError, match="not one of usb, usb:N, pci, pci:N"):
        EdgeTPUConfig(device=bad)


def test_probe_missing_library(tmp_path):
    r = probe_delegate(str(tmp_path / "libedgetpu.so.1"), "usb", timeout_s=60)
    assert not r.ok and r.kind == "library"
    assert "libedgetpu.so.1 not found" in r.reason


def test_probe_bogus_library(tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"\x7fELF not really" + bytes(range(256)) * 4)
    r = probe_delegate(str(bogus), "usb", timeout_s=60)
    assert not r.ok and r.kind == "library"
    assert str(bogus) in r.reason and "cannot be loaded" in r.reason


def test_probe_library_without_delegate_symbol(build_so):
    lib = build_so("notdelegate", NOT_A_DELEGATE)
    r = probe_delegate(str(lib), "usb:0", timeout_s=60)
    assert (r.ok, r.kind) == (False, "symbol") and "not a TFLite delegate plugin" in r.reason


def test_probe_delegate_that_finds_no_device(build_so):
    lib = build_so("nulldelegate", NULL_DELEGATE)
    r = probe_delegate(str(lib), "usb:0", timeout_s=60)
    assert (r.ok, r.kind) == (False, "delegate")
    assert "found no Edge TPU for device 'usb:0'" in r.reason


def test_probe_crash_is_contained(build_so):
    lib = build_so("segv", SEGFAULT_ON_LOAD)
    r = probe_delegate(str(lib), "usb", timeout_s=60)
    assert (r.ok, r.kind) == (False, "signal")
    assert "SIGSEGV" in r.reason and str(lib) in r.reason


def test_probe_timeout(build_so):
    lib = build_so("hang", HANG_ON_LOAD)
    r = probe_delegate(str(lib), "usb", timeout_s=3)
    assert (r.ok, r.kind) == (False, "timeout") and "timed out after 3 s" in r.reason


@pytest.mark.skipif(
    bool(ctypes.util.find_library("edgetpu")), reason="libedgetpu is installed on this machine"
)
def test_fallback_on_this_machine(short_manifest, astronaut_bgr, astronaut_face, detect_faces, tmp_path):
    """No libedgetpu, no TPU: edgetpu runs the model's CPU artifact on tflite and says why."""
    from app.detection import iou

    opened = open_runtime(EdgeTPUConfig(threads=2), short_manifest, HostRoots(tmp_path))
    try:
        assert (opened.name, opened.requested, opened.artifact_key) == ("tflite", "edgetpu", "tflite")
        fb = opened.fallback
        assert fb is not None and (fb["from"], fb["to"]) == ("edgetpu", "tflite")
        assert "libedgetpu" in fb["reason"] and "no Edge TPU device" in fb["reason"]
        assert "\n" not in fb["reason"]
        dets = detect_faces(opened, short_manifest, astronaut_bgr)
        assert len(dets) == 1 and iou(dets[0].box, astronaut_face) >= 0.9
    finally:
        opened.runtime.close()


def test_fallback_when_delegate_fails_with_device_present(short_manifest, tpu_tree, tmp_path):
    bogus = tmp_path / "libedgetpu-bogus.so.1"
    bogus.write_bytes(b"definitely not an ELF file" * 64)
    cfg = EdgeTPUConfig(device="usb:1", delegate_path=str(bogus))
    opened = open_runtime(cfg, short_manifest, HostRoots(tmp_path))
    try:
        assert opened.name == "tflite" and opened.fallback is not None
        reason = opened.fallback["reason"]
        assert str(bogus) in reason and "invalid ELF header" in reason
        assert "present: usb:1 ready" in reason
    finally:
        opened.runtime.close()


def test_fallback_fail_raises(short_manifest, tmp_path):
    cfg = EdgeTPUConfig(fallback="fail", delegate_path=str(tmp_path / "libedgetpu.so.1"))
    with pytest.raises(RuntimeUnavailable, match=r"fallback = 'fail'.*libedgetpu\.so\.1 not found"):
        open_runtime(cfg, short_manifest, HostRoots(tmp_path))


def test_runtime_load_refuses_without_tpu(short_manifest, tmp_path):
    """Used directly (not via select), the Edge TPU runtime probes first and raises, never crashes."""
    rt = EdgeTPURuntime(HostRoots(tmp_path))
    cfg = EdgeTPUConfig(delegate_path=str(tmp_path / "libedgetpu.so.1"))
    with pytest.raises(RuntimeUnavailable, match="no Edge TPU device 'any' present"):
        rt.load(short_manifest.artifact_path("tflite"), cfg)
