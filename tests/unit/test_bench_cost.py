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
    gb_s, usd, req = cost.cost_per_1000(500.0, 2048, invocations_per_image=4)  # batch of 1
    assert gb_s == pytest.approx(1000 * 0.5 * 2.0)  # 1000 GB-s
    assert req == pytest.approx(4000 * 0.20 / 1e6)  # $0.0008
    assert usd["x86_64"] == pytest.approx(1000 * 0.0000166667 + 0.0008)
    assert usd["arm64"] == pytest.approx(1000 * 0.0000133334 + 0.0008)
    assert usd["arm64"] < usd["x86_64"]


def test_cost_table_rows_have_the_fields_and_cheaper_per_image_time_at_more_memory():
    t = cost.StageTimes(
        preprocess_ms=10.0, infer_1t_ms=700.0, postprocess_ms=5.0, infer_efficiency=0.9
    )
    rows = cost.cost_table(t, [1769, 3008, 10240], cost.invocations_per_image(24))
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


# --- the bill of one run (aws_cost) ---------------------------------------------------------
def test_scaled_lambda_gb_s_below_and_above_one_vcpu():
    # 1769 MB = 1 vCPU: 100 ms kept, 100 ms x 1769/1024 GB
    assert cost.scaled_lambda_gb_s(100.0, 1769) == pytest.approx(0.1 * 1769 / 1024)
    # 884.5 MB -> half a vCPU: 100 ms becomes 200 ms; ceil to whole ms first
    assert cost.scaled_lambda_gb_s(100.0, 512) == pytest.approx(
        math.ceil(100.0 * 1769 / 512) / 1000 * 0.5)
    assert cost.scaled_lambda_gb_s(0.2, 3008) == pytest.approx(0.001 * 3008 / 1024)  # 1 ms


def test_express_gb_s_rounds_up_to_100ms_and_64mb():
    assert cost.express_gb_s(0.05) == pytest.approx(0.1 * 64 / 1024)
    assert cost.express_gb_s(0.1) == pytest.approx(0.1 * 64 / 1024)
    assert cost.express_gb_s(1.234) == pytest.approx(1.3 * 64 / 1024)
    assert cost.express_gb_s(0.3, memory_mb=65) == pytest.approx(0.3 * 128 / 1024)


def test_aws_cost_against_hand_computed_figures():
    counts = {"lambda_invocations": 1000, "lambda_gb_s": 500.0,
              "sfn_standard_transitions": 4000, "sfn_express_requests": 100,
              "sfn_express_gb_s": 10.0, "s3_get": 2000, "s3_put": 1000, "s3_list": 10,
              "s3_head": 500, "dynamodb_write_units": 1000}
    out = cost.aws_cost(counts, images=1000)
    # Lambda: 500 GB-s x 0.0000166667 + 1000 x 0.20 / 1e6 = 0.00833335 + 0.0002
    assert out["usd"]["lambda"] == pytest.approx(0.00853335)
    # Step Functions: 4000 x 0.025 / 1000 + 100 x 1 / 1e6 + 10 x 0.00001667 = 0.1 + 0.0001
    # + 0.0001667
    assert out["usd"]["step_functions"] == pytest.approx(0.1002667)
    # S3: (2000 + 500) x 0.0004 / 1000 + (1000 + 10) x 0.005 / 1000 = 0.001 + 0.00505
    assert out["usd"]["s3"] == pytest.approx(0.00605)
    # DynamoDB: 1000 x 0.625 / 1e6
    assert out["usd"]["dynamodb"] == pytest.approx(0.000625)
    total = 0.00853335 + 0.1002667 + 0.00605 + 0.000625
    assert out["usd"]["total"] == pytest.approx(total)
    assert out["usd_per_1000_images"] == pytest.approx(total)
    assert out["orchestration_share"] == pytest.approx(0.1002667 / total)
    assert out["prices_as_of"] == cost.PRICES_AS_OF and out["images"] == 1000
    assert set(cost.COUNT_KEYS) <= set(out["counts"]) and out["notes"]


def test_aws_cost_prices_lambda_per_architecture():
    out = cost.aws_cost({"lambda_gb_s_by_arch": {"x86_64": 100.0, "arm64": 100.0}}, images=10)
    assert out["usd"]["lambda"] == pytest.approx(100 * 0.0000166667 + 100 * 0.0000133334)
    assert cost.aws_cost({"lambda_gb_s": 100.0}, 10, arch="arm64")["usd"]["lambda"] == \
        pytest.approx(100 * 0.0000133334)
    assert cost.aws_cost({}, 0)["usd_per_1000_images"] is None


# --- batches: one invoke per stage per batch, each stage at its own MemorySize ---------------
TEMPLATE_MEMORY = {"preprocess": 1024, "infer": 3008, "postprocess": 1024, "store": 256}


def test_four_invocations_per_batch_are_four_over_the_batch_size_per_image():
    from yolo_sfn.contract import IMAGE_STAGES

    assert cost.INVOCATIONS_PER_BATCH == len(IMAGE_STAGES) == 4
    assert cost.invocations_per_image(24) == pytest.approx(4 / 24)
    assert cost.invocations_per_image(10) == pytest.approx(0.4)
    assert cost.invocations_per_image(1) == 4
    assert cost.Deployment(10, TEMPLATE_MEMORY).invocations_per_image == pytest.approx(0.4)
    with pytest.raises(ValueError):
        cost.invocations_per_image(0)


@pytest.mark.parametrize(
    ("batch", "memory"),
    [(0, TEMPLATE_MEMORY), (24, {**TEMPLATE_MEMORY, "infer": 64}),
     (24, {k: v for k, v in TEMPLATE_MEMORY.items() if k != "store"})],
)
def test_deployment_refuses_a_bad_batch_size_or_memory(batch, memory):
    with pytest.raises(ValueError):
        cost.Deployment(batch, memory)


def test_requests_per_1000_images_at_a_batch_size():
    t = cost.StageTimes(10.0, 700.0, 5.0, 0.8)
    (row,) = cost.cost_table(t, [1769], cost.invocations_per_image(24))
    # 1,000 images in full batches of 24: 1000 x 4 / 24 = 166.7 requests at $0.20 per 1M
    assert row.request_usd_per_1000 == pytest.approx(1000 * 4 / 24 * 0.20 / 1e6)
    assert row.usd_per_1000["x86_64"] == pytest.approx(
        715.0 * 1769 / 1024 * 0.0000166667 + 1000 * 4 / 24 * 0.20 / 1e6)


def test_deployed_estimate_prices_each_stage_at_its_own_memory_against_hand_arithmetic():
    t = cost.StageTimes(
        preprocess_ms=10.0, infer_1t_ms=700.0, postprocess_ms=5.0, infer_efficiency=0.8
    )
    d = cost.deployed_estimate(t, cost.Deployment(24, TEMPLATE_MEMORY))
    by = {s["stage"]: s for s in d["stages"]}
    assert list(by) == ["preprocess", "infer", "postprocess", "store"]
    share = 1024 / 1769  # 0.579 vCPU: single-threaded stages take 1 / share longer
    pre, post = 10.0 / share, 5.0 / share
    infer = 700.0 / (1 + (3008 / 1769 - 1) * 0.8)  # 1.70 vCPU, efficiency 0.8
    assert by["preprocess"]["est_ms_per_image"] == pytest.approx(pre)
    assert by["infer"]["est_ms_per_image"] == pytest.approx(infer)
    assert by["postprocess"]["est_ms_per_image"] == pytest.approx(post)
    assert by["infer"]["threads"] == 2 and by["preprocess"]["vcpus"] == pytest.approx(0.579)
    assert by["store"]["memory_mb"] == 256
    assert by["store"]["est_ms_per_image"] is None and by["store"]["gb_s_per_1000"] is None
    gb_s = (pre + post) * 1024 / 1024 + infer * 3008 / 1024  # per 1,000 images: ms -> s x 1000
    assert d["gb_s_per_1000"] == pytest.approx(gb_s)
    assert d["est_ms_per_image"] == pytest.approx(pre + infer + post)
    req = 1000 * 4 / 24 * 0.20 / 1e6
    assert d["request_usd_per_1000"] == pytest.approx(req)
    assert d["usd_per_1000"]["x86_64"] == pytest.approx(gb_s * 0.0000166667 + req)
    assert d["usd_per_1000"]["arm64"] == pytest.approx(gb_s * 0.0000133334 + req)


def test_bench_estimate_keeps_the_old_keys_and_says_what_it_leaves_out():
    t = cost.StageTimes(10.0, 700.0, 5.0, 0.8)
    out = cost.bench_estimate(t, [1769, 3008], cost.Deployment(10, TEMPLATE_MEMORY))
    # keys of the per-image design, kept: invocations_per_image is now 4 / batch size
    for key in ("rows", "prices", "price_per_request", "invocations_per_image", "price_note",
                "scaling_note"):
        assert key in out, key
    assert out["invocations_per_image"] == pytest.approx(0.4)
    assert out["batch_size"] == 10 and out["invocations_per_batch"] == 4
    assert [r["memory_mb"] for r in out["rows"]] == [1769, 3008]
    assert all(r["request_usd_per_1000"] == pytest.approx(1000 * 0.4 * 0.20 / 1e6)
               for r in out["rows"])
    assert out["deployed"]["request_usd_per_1000"] == pytest.approx(1000 * 0.4 * 0.20 / 1e6)
    assert "one memory size" in out["rows_note"] and "DIR/cost.json" in out["scope_note"]
    assert "Store's compute" in out["scope_note"]
