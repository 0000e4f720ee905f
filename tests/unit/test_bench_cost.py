"""Cost model arithmetic of ``yolo_sfn.bench.cost`` (no timing)."""

from __future__ import annotations

import math

import pytest

from yolo_sfn.bench import cost


def test_vcpus_scale_linearly_with_memory_and_cap_at_six():
    assert cost.vcpus_for_memory(1769) == pytest.approx(1.0)
    assert cost.vcpus_for_memory(3538) == pytest.approx(2.0)
    assert cost.vcpus_for_memory(884.5 * 2) == pytest.approx(1.0)
    assert cost.vcpus_for_memory(10240) == pytest.approx(10240 / 1769)  # 5.79, under the cap
    assert cost.vcpus_for_memory(10240) <= 6.0


@pytest.mark.parametrize("bad", [0, 127, 10241, 20000])
def test_memory_out_of_lambda_range_is_rejected(bad):
    with pytest.raises(ValueError):
        cost.vcpus_for_memory(bad)


def test_threads_are_ceil_of_vcpus():
    assert cost.threads_for_memory(128) == 1
    assert cost.threads_for_memory(1769) == 1
    assert cost.threads_for_memory(1770) == 2
    assert cost.threads_for_memory(3008) == 2
    assert cost.threads_for_memory(10240) == 6


def test_parallel_efficiency():
    assert cost.parallel_efficiency(700.0, 350.0, 2) == pytest.approx(1.0)
    assert cost.parallel_efficiency(700.0, 437.5, 2) == pytest.approx(0.8)
    assert cost.parallel_efficiency(700.0, 700.0, 1) == 1.0
    assert cost.parallel_efficiency(100.0, 10.0, 2) == 1.0  # clamped


def test_speedup_below_one_vcpu_is_the_share_and_single_threaded_stages_stop_at_one():
    assert cost.speedup(0.5, 0.9, parallel=True) == pytest.approx(0.5)
    assert cost.speedup(3.0, 0.5, parallel=True) == pytest.approx(2.0)
    assert cost.speedup(3.0, 0.5, parallel=False) == pytest.approx(1.0)


def test_estimate_ms_combines_single_and_multi_threaded_stages():
    t = cost.StageTimes(
        preprocess_ms=10.0, infer_1t_ms=700.0, postprocess_ms=5.0, infer_efficiency=0.8
    )
    # 1769 MB: one vCPU -> exactly the one-core times
    assert cost.estimate_ms(t, 1769) == pytest.approx(715.0)
    # half a vCPU: everything twice as slow
    assert cost.estimate_ms(t, 1769 // 2 + 0.5) == pytest.approx(1430.0)
    # 3 vCPUs (5307 MB): infer / (1 + 2 * 0.8), pre/post unchanged
    assert cost.estimate_ms(t, 5307) == pytest.approx(15.0 + 700.0 / 2.6)


def test_cost_per_1000_matches_hand_arithmetic():
    gb_s, usd, req = cost.cost_per_1000(500.0, 2048, invocations_per_image=4)
    assert gb_s == pytest.approx(1000 * 0.5 * 2.0)  # 1000 GB-s
    assert req == pytest.approx(4000 * 0.20 / 1e6)  # $0.0008
    assert usd["x86_64"] == pytest.approx(1000 * 0.0000166667 + 0.0008)
    assert usd["arm64"] == pytest.approx(1000 * 0.0000133334 + 0.0008)
    assert usd["arm64"] < usd["x86_64"]


def test_cost_table_rows_have_the_fields_and_cheaper_per_image_time_at_more_memory():
    t = cost.StageTimes(
        preprocess_ms=10.0, infer_1t_ms=700.0, postprocess_ms=5.0, infer_efficiency=0.9
    )
    rows = cost.cost_table(t, [1769, 3008, 10240])
    assert [r.memory_mb for r in rows] == [1769, 3008, 10240]
    times = [r.est_ms_per_image for r in rows]
    assert times == sorted(times, reverse=True)
    d = rows[0].to_dict()
    assert set(d) == {
        "memory_mb",
        "vcpus",
        "threads",
        "est_ms_per_image",
        "gb_s_per_1000",
        "usd_per_1000",
        "request_usd_per_1000",
    }
    assert set(d["usd_per_1000"]) == {"x86_64", "arm64"}
    assert math.isclose(d["gb_s_per_1000"], 715.0 * 1769 / 1024)


def test_parse_memory_sizes():
    assert cost.parse_memory_sizes("1769,3008,10240") == [1769, 3008, 10240]
    assert cost.parse_memory_sizes(" 512 , ") == [512]
    for bad in ("", "abc", "64", "1769,99999", "1769,,1769"):
        with pytest.raises(ValueError):
            cost.parse_memory_sizes(bad)


def test_price_note_states_region_tier_and_date():
    assert "us-east-1" in cost.PRICE_NOTE
    assert "first tier" in cost.PRICE_NOTE
    assert cost.PRICES_AS_OF in cost.PRICE_NOTE
    assert "ESTIMATE" in cost.SCALING_NOTE and "1769" in cost.SCALING_NOTE
