"""PowerSampler and EnergyAccumulator: energy over windows from power samples or an energy counter."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.config import HwmonMeter, NoMeter, RaplMeter
from app.measure.power import EnergyAccumulator, PowerSampler, make_meter


def hwmon_meter(tree, root: Path, microwatts: int, energy_uj: int | None = None):
    files = {"hwmon2/name": "ina260\n", "hwmon2/power1_input": f"{microwatts}\n"}
    if energy_uj is not None:
        files["hwmon2/energy1_input"] = f"{energy_uj}\n"
    tree(root, files)
    return make_meter(HwmonMeter(name="ina260", root=root, rate_hz=400))


def test_trapezoid_integration_of_a_ramp(tree, tmp_path: Path) -> None:
    """Samples of P(t) = 2 + 3t W: the integral over [a, b] is exact for a linear ramp."""
    s = PowerSampler(hwmon_meter(tree, tmp_path, 1), rate_hz=100)
    ts = np.arange(0, 2_000_000_001, 10_000_000)  # 0..2 s every 10 ms
    for t in ts:
        s.add_sample(int(t), 2.0 + 3.0 * t / 1e9, None)
    a, b = 0.25, 1.75
    want = 2 * (b - a) + 1.5 * (b * b - a * a)
    assert s.energy_j(int(a * 1e9), int(b * 1e9)) == pytest.approx(want, rel=1e-6)
    assert s.mean_w(int(a * 1e9), int(b * 1e9)) == pytest.approx(want / (b - a), rel=1e-6)
    assert s.energy_j(int(1.9e9), int(2.5e9)) is None  # not covered by samples yet


def test_energy_counter_is_differenced(tree, tmp_path: Path) -> None:
    meter = make_meter(
        RaplMeter(
            root=tree(
                tmp_path,
                {
                    "intel-rapl:0/name": "package-0\n",
                    "intel-rapl:0/energy_uj": "0\n",
                    "intel-rapl:0/max_energy_range_uj": "1000000\n",
                },
            )
        )
    )
    s = PowerSampler(meter, rate_hz=100)
    for i, uj in enumerate((0, 400_000, 800_000, 200_000, 600_000)):  # wraps at 1 J
        (tmp_path / "intel-rapl:0/energy_uj").write_text(f"{uj}\n")
        s.add_sample(i * 100_000_000, None, meter.read_energy_j())
    assert s.energy_j(0, 400_000_000) == pytest.approx(1.6)
    assert s.energy_j(50_000_000, 150_000_000) == pytest.approx(0.4)


def test_background_thread_samples_a_constant_power(tree, tmp_path: Path) -> None:
    s = PowerSampler(hwmon_meter(tree, tmp_path, 4_200_000), rate_hz=400)
    with s:
        # a window is priced only once samples bracket it: wait for the first one before opening it
        assert s.wait_for_sample_after(time.perf_counter_ns())
        t0 = time.perf_counter_ns()
        time.sleep(0.15)
        t1 = time.perf_counter_ns()
        assert s.wait_for_sample_after(t1)
    assert s.sample_count >= 3
    hz = s.achieved_hz()
    print(f"\nsampler achieved {hz:.0f} Hz (asked 400) on a sysfs file")
    assert s.mean_w(t0, t1) == pytest.approx(4.2)
    assert s.energy_j(t0, t1) == pytest.approx(4.2 * (t1 - t0) / 1e9)


def test_measure_idle(tree, tmp_path: Path) -> None:
    s = PowerSampler(hwmon_meter(tree, tmp_path, 1_500_000), rate_hz=200)
    assert s.measure_idle(0.1) == pytest.approx(1.5)


def test_energy_accumulator_gross_and_net(tree, tmp_path: Path) -> None:
    s = PowerSampler(hwmon_meter(tree, tmp_path, 1), rate_hz=100)
    acc = EnergyAccumulator(s, idle_w=1.0)
    # power 1 W idle, 3 W during two 100 ms inferences (windows fall inside the 3 W plateaus)
    for t_ms in range(0, 1001, 5):
        busy = 200 <= t_ms <= 300 or 600 <= t_ms <= 700
        s.add_sample(t_ms * 1_000_000, 3.0 if busy else 1.0, None)
    acc.add(200_000_000, 300_000_000)
    acc.add(600_000_000, 700_000_000)
    acc.add(990_000_000, 1_200_000_000)  # not sampled yet: stays pending
    out = acc.summary()
    assert out["inferences_measured"] == 2
    assert out["energy_mj_per_inference"] == pytest.approx(300.0)  # 3 W x 100 ms
    assert out["energy_mj_per_inference_net"] == pytest.approx(200.0)  # minus 1 W idle
    assert out["power_w"] == pytest.approx(3.0)
    assert out["power_source"] == "hwmon:ina260 (hwmon2)"
    s.add_sample(1_300_000_000, 1.0, None)
    assert acc.summary()["inferences_measured"] == 3


def test_no_meter_everything_null_with_source() -> None:
    s = PowerSampler(make_meter(NoMeter())).start()
    acc = EnergyAccumulator(s, idle_w=s.measure_idle(0.01))
    acc.add(0, 10)
    out = acc.summary()
    s.stop()
    assert out["energy_mj_per_inference"] is None and out["power_w"] is None and out["idle_w"] is None
    assert out["power_source"] == "none: no power meter configured"
    assert s.energy_j(0, 10) is None and s.mean_w(0, 10) is None


def test_ring_buffer_keeps_the_newest(tree, tmp_path: Path) -> None:
    s = PowerSampler(hwmon_meter(tree, tmp_path, 1), rate_hz=1, capacity_s=10)
    for i in range(100):
        s.add_sample(i * 1_000_000_000, float(i), None)
    t, p, _ = s.samples()
    assert len(t) == s.capacity and t[-1] == 99 * 10**9 and np.all(np.diff(t) > 0)
    assert p[-1] == 99.0
