"""HealthReader on the fixture boards, asking the `vcgencmd` stand-in through the real command runner."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.measure.health import HealthReader, board_model
from app.measure.vcgencmd import Vcgencmd, VcgencmdError
from app.telemetry.contract import Throttling


def reader(board, **kw) -> HealthReader:
    return HealthReader(root=board.root, vcgencmd=str(board.bin / "vcgencmd"), **kw)


def test_pi5_with_pcie_coral(pi_board) -> None:
    h = reader(pi_board("pi5"))
    snap = h.snapshot()
    assert snap["temps"] == {"cpu-thermal": 63.85, "apex_0": 52.3}
    assert snap["temp_c"] == 63.85
    t = snap["throttled"]
    assert isinstance(t, Throttling) and t.raw == "0x50005"
    assert t.now.under_voltage and t.now.throttled and not t.now.arm_freq_capped and not t.now.soft_temp_limit
    assert t.since_boot == t.now
    assert snap["reasons"] == {}
    assert snap["rss_mb"] > 1 and snap["cpu_percent"] >= 0
    assert board_model(pi_board("pi5").root) == "Raspberry Pi 5 Model B Rev 1.0"


def test_pi4_board_and_since_boot_only(pi_board) -> None:
    board = pi_board("pi4", throttled="0x50000")
    snap = reader(board).snapshot()
    assert snap["temps"] == {"cpu-thermal": 58.426}
    t = snap["throttled"]
    assert t.raw == "0x50000" and not t.now.under_voltage and not t.now.slowed
    assert t.since_boot.under_voltage and t.since_boot.throttled
    assert board_model(board.root) == "Raspberry Pi 4 Model B Rev 1.5"


@pytest.mark.parametrize(
    ("value", "now", "since"),
    [
        (0x0, set(), set()),
        (0x80008, {"soft_temp_limit"}, {"soft_temp_limit"}),
        (0x20000, set(), {"arm_freq_capped"}),
        (0xF000F, {"under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit"},
         {"under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit"}),
    ],
)  # fmt: skip
def test_throttled_bits(value: int, now: set[str], since: set[str]) -> None:
    d = Throttling.from_register(value)
    assert {k for k, v in d.now.model_dump().items() if v} == now
    assert {k for k, v in d.since_boot.model_dump().items() if v} == since
    assert d.raw == f"0x{value:x}"


def test_no_thermal_zone_falls_back_to_measure_temp(pi_board) -> None:
    board = pi_board("pi5")
    for p in (board.root / "sys/class/thermal/thermal_zone0").iterdir():
        p.unlink()
    for p in (board.root / "sys/class/apex/apex_0").iterdir():
        p.unlink()
    snap = reader(board).snapshot()
    assert snap["temps"] == {"vcgencmd": 63.9} and snap["temp_c"] == 63.9


def test_not_a_pi_at_all(tmp_path: Path) -> None:
    h = HealthReader(root=tmp_path, vcgencmd=str(tmp_path / "no-such-vcgencmd"))
    s1, s2 = h.snapshot(), h.snapshot()
    assert s1["throttled"] is None and "not found" in s1["reasons"]["throttled"]
    assert s1["temp_c"] is None and "thermal" in s1["reasons"]["temp_c"] and s1["temps"] == {}
    assert s2["reasons"] == s1["reasons"]
    assert board_model(tmp_path) is None


def test_firmware_error_and_garbage_are_reasons(pi_board) -> None:
    board = pi_board("pi5")
    board.answer("get_throttled", None)  # the firmware's unknown-command answer
    snap = reader(board).snapshot()
    assert snap["throttled"] is None
    assert snap["reasons"]["throttled"].endswith("get_throttled: Command not registered")
    board.answer("get_throttled", "VCHI initialization failed\n")
    snap = reader(board).snapshot()
    assert snap["throttled"] is None and "VCHI initialization failed" in snap["reasons"]["throttled"]
    board.answer("get_throttled", "throttled=0x50005\n")
    assert reader(board).snapshot()["reasons"] == {}


def test_a_hung_vcgencmd_costs_one_timeout_then_backs_off(pi_board) -> None:
    board = pi_board("pi5")
    board.hang("get_throttled")
    h = reader(board, timeout_s=0.5)
    t0 = time.monotonic()
    first = h.snapshot()
    took = time.monotonic() - t0
    assert first["throttled"] is None and "timed out after 0.5 s" in first["reasons"]["throttled"]
    assert took < 5  # bounded (the hung process group was killed), whatever the machine's load
    t0 = time.monotonic()
    second = h.snapshot()
    assert time.monotonic() - t0 < took  # not asked again during the back-off
    assert "not asked again" in second["reasons"]["throttled"]
    assert second["temps"] == first["temps"] == {"cpu-thermal": 63.85, "apex_0": 52.3}


def test_vcgencmd_backoff_expires() -> None:
    now = [0.0]
    calls = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        raise RuntimeError("vcgencmd get_throttled timed out after 1 s")

    vc = Vcgencmd(run=run, backoff_s=30.0, clock=lambda: now[0])
    for t in (0.0, 10.0, 29.9, 30.0):
        now[0] = t
        with pytest.raises(VcgencmdError, match="timed out"):
            vc.query("get_throttled")
    assert len(calls) == 2  # at 0 s and again once the 30 s back-off ran out
