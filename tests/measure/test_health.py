"""HealthReader against a fixture sysfs tree and recorded vcgencmd outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.measure.health import HealthReader, decode_throttled


def pi_tree(tree, root: Path) -> Path:
    return tree(
        root,
        {
            "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
            "sys/class/thermal/thermal_zone0/temp": "61250\n",
            "sys/class/thermal/thermal_zone1/type": "rp1_adc\n",
            "sys/class/thermal/thermal_zone1/temp": "48700\n",
            "sys/class/apex/apex_0/temp": "73050\n",
            "sys/class/apex/apex_0/trip_point0_temp": "85000\n",
        },
    )


def test_snapshot_on_a_pi_with_pcie_coral(tree, tmp_path: Path) -> None:
    runs: list[list[str]] = []

    def run(argv: list[str]) -> str:
        runs.append(argv)
        return "throttled=0x50005\n"

    h = HealthReader(root=pi_tree(tree, tmp_path), run=run)
    snap = h.snapshot()
    assert snap["temps"] == {"cpu-thermal": 61.25, "rp1_adc": 48.7, "apex_0": 73.05}
    assert snap["temp_c"] == 73.05
    assert runs == [["vcgencmd", "get_throttled"]]
    t = snap["throttled"]
    assert t["raw"] == "0x50005"
    assert t["now"] == {
        "under_voltage": True,
        "arm_freq_capped": False,
        "throttled": True,
        "soft_temp_limit": False,
    }
    assert t["since_boot"] == {
        "under_voltage": True,
        "arm_freq_capped": False,
        "throttled": True,
        "soft_temp_limit": False,
    }
    assert t["any_now"] and snap["reasons"] == {}
    assert snap["rss_mb"] > 1 and snap["cpu_percent"] >= 0


@pytest.mark.parametrize(
    ("value", "now", "since"),
    [
        (0x0, set(), set()),
        (0x80008, {"soft_temp_limit"}, {"soft_temp_limit"}),
        (0x20000, set(), {"arm_freq_capped"}),
        (
            0xF000F,
            {"under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit"},
            {"under_voltage", "arm_freq_capped", "throttled", "soft_temp_limit"},
        ),
    ],
)
def test_throttled_bits(value: int, now: set[str], since: set[str]) -> None:
    d = decode_throttled(value)
    assert {k for k, v in d["now"].items() if v} == now
    assert {k for k, v in d["since_boot"].items() if v} == since


def test_no_vcgencmd_and_no_thermal_zones(tmp_path: Path) -> None:
    calls = []

    def run(argv: list[str]) -> str:
        calls.append(argv)
        raise FileNotFoundError(argv[0])

    h = HealthReader(root=tmp_path, run=run)
    s1, s2 = h.snapshot(), h.snapshot()
    assert s1["throttled"] is None and "vcgencmd not found" in s1["reasons"]["throttled"]
    assert s1["temp_c"] is None and "thermal" in s1["reasons"]["temp_c"]
    assert len(calls) == 1 and s2["throttled"] is None  # not retried every snapshot


def test_garbled_vcgencmd_output_is_a_reason(tmp_path: Path) -> None:
    h = HealthReader(root=tmp_path, run=lambda argv: "VCHI initialization failed\n")
    s = h.snapshot()
    assert s["throttled"] is None and "VCHI" in s["reasons"]["throttled"]
