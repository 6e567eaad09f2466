"""Calibrated expected throughput, challenge sizing and the throughput limits (SPEC 4.5)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byteleap.challenge.params import CPU_DEFAULT, GPU_DEFAULT
from byteleap.challenge.sizing import (
    CPU_PEAK_FLOPS,
    MAX_DEADLINE_S,
    CalibrationSettings,
    calibrate,
    credited_throughput,
    impossible_limit,
    low_percentile,
    size_challenge,
)
from byteleap.hardware import (
    CATALOGUE,
    CPU_MODEL,
    UNKNOWN,
    identify,
    max_dense_tf32,
    max_exact_peak,
    slowest_backend_flops,
)

SETTINGS = CalibrationSettings(cpu_expected_flops=2e9, percentile=20.0, min_miners=3, floor=0.75)
H100 = CATALOGUE["h100-sxm"]


def test_the_catalogue_figure_holds_until_enough_miners_verified_the_model() -> None:
    samples = [("m1", "h100-sxm", 400e12), ("m2", "h100-sxm", 410e12)]
    rate = calibrate(samples, SETTINGS).rate("h100-sxm")
    assert rate.expected_flops == H100.backend_flops
    assert rate.source == "catalogue" and rate.miners == 2


def test_the_network_figure_is_a_low_percentile_of_per_miner_medians() -> None:
    # ten miners from 300 to 390 TFLOP/s; p20 of ten is the second lowest
    samples = [(f"m{i}", "h100-sxm", (300 + 10 * i) * 1e12) for i in range(10)]
    rate = calibrate(samples, SETTINGS).rate("h100-sxm")
    assert rate.source == "network" and rate.miners == 10
    assert rate.expected_flops == pytest.approx(310e12)


def test_one_miner_with_many_slow_claims_is_one_vote() -> None:
    samples = [("slow", "h100-sxm", 1e12)] * 500
    samples += [(f"m{i}", "h100-sxm", 350e12) for i in range(9)]
    rate = calibrate(samples, SETTINGS).rate("h100-sxm")
    assert rate.expected_flops == pytest.approx(350e12)


def test_slow_miners_can_drag_the_figure_only_to_the_floor() -> None:
    samples = [(f"slow{i}", "h100-sxm", 1e12) for i in range(50)]
    rate = calibrate(samples, SETTINGS).rate("h100-sxm")
    assert rate.source == "floor"
    assert rate.expected_flops == pytest.approx(0.75 * H100.backend_flops)


def test_no_model_is_expected_faster_than_its_exact_peak() -> None:
    samples = [(f"m{i}", "h100-sxm", 1e18) for i in range(5)]
    assert calibrate(samples, SETTINGS).expected_flops("h100-sxm") == H100.exact_peak_flops


def test_unknown_models_are_never_calibrated_and_sized_as_the_slowest_card() -> None:
    samples = [(f"m{i}", UNKNOWN, 900e12) for i in range(10)]
    rates = calibrate(samples, SETTINGS)
    assert rates.expected_flops(UNKNOWN) == slowest_backend_flops()
    configured = CalibrationSettings(cpu_expected_flops=2e9, unknown_flops=1e13)
    assert calibrate([], configured).expected_flops(UNKNOWN) == 1e13


def test_cpu_devices_start_at_the_configured_figure_and_calibrate() -> None:
    assert calibrate([], SETTINGS).expected_flops(CPU_MODEL) == 2e9
    samples = [(f"m{i}", CPU_MODEL, 3e9) for i in range(3)]
    assert calibrate(samples, SETTINGS).expected_flops(CPU_MODEL) == pytest.approx(3e9)


def test_nonsense_samples_are_ignored() -> None:
    samples = [(f"m{i}", "h100-sxm", bad) for i, bad in enumerate([0.0, -1.0, math.nan, math.inf])]
    assert calibrate(samples, SETTINGS).rate("h100-sxm").miners == 0


@given(st.lists(st.floats(min_value=1e9, max_value=1e16), min_size=1, max_size=40))
def test_calibration_stays_within_floor_and_ceiling(values: list[float]) -> None:
    samples = [(f"m{i}", "a100-sxm", v) for i, v in enumerate(values)]
    rate = calibrate(samples, SETTINGS).rate("a100-sxm")
    model = CATALOGUE["a100-sxm"]
    assert 0.75 * model.backend_flops <= rate.expected_flops <= model.exact_peak_flops


def test_low_percentile_is_nearest_rank() -> None:
    assert low_percentile([5, 1, 3, 2, 4], 20) == 1
    assert low_percentile([5, 1, 3, 2, 4], 50) == 3
    assert low_percentile([7], 1) == 7
    with pytest.raises(ValueError):
        low_percentile([], 20)


def test_gpu_sizing_targets_the_seconds_and_caps_the_deadline() -> None:
    sizing = size_challenge(
        device_class="gpu",
        model_id="h100-sxm",
        expected_flops=H100.backend_flops,
        base=GPU_DEFAULT,
        target_seconds=10.0,
        deadline_factor=1.5,
        round_trip_s=0.3,
    )
    assert sizing.expected_s == pytest.approx(10.0, rel=0.01)
    assert sizing.deadline_s == pytest.approx(1.5 * sizing.expected_s + 0.3)
    slow = size_challenge(
        device_class="cpu",
        model_id=CPU_MODEL,
        expected_flops=1.0,
        base=CPU_DEFAULT,
        target_seconds=None,
        deadline_factor=1.5,
        round_trip_s=0.0,
    )
    assert slow.params == CPU_DEFAULT and slow.deadline_s == MAX_DEADLINE_S


def test_the_impossible_limit_is_the_fastest_exact_format() -> None:
    h100 = identify("GPU-1", "NVIDIA H100 80GB HBM3")
    assert impossible_limit(h100, 1.1) == pytest.approx(1.1 * H100.exact_peak_flops)
    assert H100.exact_peak_flops > 3 * H100.dense_tf32_flops  # int8 beats TF32
    unknown = identify("GPU-2", "Mystery Accelerator 9000")
    assert impossible_limit(unknown, 1.1) == pytest.approx(1.1 * max_exact_peak())
    cpu = identify("CPU-3", "NVIDIA H200")
    assert impossible_limit(cpu, 1.1) == pytest.approx(1.1 * CPU_PEAK_FLOPS)


def test_an_unknown_models_credit_is_capped_at_the_catalogue_maximum() -> None:
    unknown = identify("GPU-2", "NVIDIA GeForce RTX 3090 H200")
    assert unknown.model_id == UNKNOWN
    assert credited_throughput(unknown, 10 * max_dense_tf32()) == max_dense_tf32()
    assert credited_throughput(unknown, 1e12) == 1e12
    h100 = identify("GPU-1", "NVIDIA H100 80GB HBM3")
    assert credited_throughput(h100, 1500e12) == 1500e12


def test_the_sample_window_keeps_the_newest_per_miner_within_the_window() -> None:
    from datetime import UTC, datetime, timedelta

    from byteleap.challenge.sizing import SampleWindow

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    window = SampleWindow(timedelta(hours=24), per_miner=3)
    for i in range(5):
        window.add(t0 + timedelta(minutes=i), "m1", "h100-sxm", float(i + 1))
    window.add(t0, "m2", "h100-sxm", 7.0)
    window.add(t0, "m2", UNKNOWN, 9.0)  # never calibrates
    window.add(t0, "m2", "h100-sxm", math.nan)  # nonsense is dropped
    assert len(window) == 4
    assert sorted(window.samples(t0 + timedelta(hours=1))) == [
        ("m1", "h100-sxm", 3.0),
        ("m1", "h100-sxm", 4.0),
        ("m1", "h100-sxm", 5.0),
        ("m2", "h100-sxm", 7.0),
    ]
    # a day later, m2's sample (at t0) is gone and m1's newest remain
    later = t0 + timedelta(hours=24, minutes=3)
    assert sorted(window.samples(later)) == [("m1", "h100-sxm", 4.0), ("m1", "h100-sxm", 5.0)]
    assert len(window) == 2
