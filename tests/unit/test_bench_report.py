"""Output structure of the bench helpers and the ``yolo-sfn bench`` command (no timing)."""

from __future__ import annotations

import argparse

import pytest

from yolo_sfn.bench import cost, report
from yolo_sfn.commands import bench as bench_cmd


def test_target_pass_fail_and_line():
    ok = report.Target("fp32 vs OpenCV", 0.7, "<=", 0.85, "x")
    bad = report.Target("int8 speed-up", 2.5, ">=", 3.0, "x")
    assert ok.passed and not bad.passed
    assert ok.line().startswith("[PASS] fp32 vs OpenCV: 0.7x")
    assert bad.line().startswith("[FAIL]")
    assert ok.to_dict()["passed"] is True
    with pytest.raises(ValueError):
        report.Target("x", 1, "==", 1)


def test_verdict_exit_code(capsys):
    assert report.verdict([report.Target("a", 1, "<", 2)]) == 0
    assert report.verdict([report.Target("a", 1, "<", 2), report.Target("b", 3, "<", 2)]) == 1
    assert capsys.readouterr().out.count("\n") == 3


def test_table_formats_floats_and_none():
    text = report.table(["a", "bb"], [[1.234, None], ["x", 2]])
    lines = text.splitlines()
    assert lines[0].split() == ["a", "bb"]
    assert lines[2].split() == ["1.2", "-"]
    assert lines[3].split() == ["x", "2"]
    assert len(lines) == 4


def test_bench_parser_defaults():
    parser = argparse.ArgumentParser()
    bench_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--model", "m.tflite", "--json"])
    assert str(args.model) == "m.tflite" and args.json and args.runs == 20
    assert cost.parse_memory_sizes(args.memory_sizes) == [1769, 3008, 10240]
    assert args.func is bench_cmd.run


def _fake_result() -> dict:
    t = cost.StageTimes(10.0, 700.0, 5.0, 0.9)
    stage = {"median_ms": 1.0, "min_ms": 0.5, "n": 3}
    return {
        "model": {
            "path": "m.tflite",
            "name": "m",
            "precision": "fp32",
            "input_size": [416, 416],
            "file_mb": 33.0,
        },
        "machine": {"cpu": "cpu", "cpus": 2, "loadavg_1m": 0.1, "date_utc": "2026-11-25 22:00 UTC"},
        "threads": 2,
        "cold": {
            "cold_total_s": [0.9],
            "interpreter_start_s": [0.02],
            "import_s": [0.2],
            "load_s": [0.3],
            "first_infer_s": [0.4],
            "peak_rss_mb": 200.0,
            "model_mb": 33.0,
        },
        "steady": {
            "runs": 3,
            "images": 5,
            "first_infer_ms": 50.0,
            "images_per_s": 10.0,
            **{s: stage for s in ("decode", "preprocess", "infer", "postprocess", "total")},
        },
        "infer_1thread_median_ms": 700.0,
        "parallel_efficiency": 0.9,
        "cost": {
            **cost.bench_estimate(t, [1769, 3008], cost.Deployment(
                24, {"preprocess": 1024, "infer": 3008, "postprocess": 1024, "store": 256})),
            "batch_size_from": bench_cmd.BATCH_SIZE_FROM_TEMPLATE,
        },
    }


def test_render_mentions_every_section_and_the_price_date():
    text = bench_cmd.render(_fake_result())
    for needle in (
        "cold load",
        "peak RSS",
        "steady state",
        "images/s",
        "Lambda cost per 1,000",
        "1769",
        "3008",
        cost.PRICES_AS_OF,
        "us-east-1",
        "ESTIMATE",
        "$0.20 per 1M",
    ):
        assert needle in text, needle


def test_render_notes_a_capped_postprocess_only_when_the_cap_was_hit():
    r = _fake_result()
    r["steady"].update(candidate_cap=30_000, candidates={"a.jpg": 12, "b.jpg": 0})
    assert "pre-NMS cap" not in bench_cmd.render(r)
    r["steady"]["candidates"] = {"a.jpg": 550_000, "b.jpg": 549_000, "c.jpg": 3}
    text = bench_cmd.render(r)
    assert "note: 2 of 3 images have more" in text and "550,000 median vs 30,000" in text


def test_script_parser_has_the_common_bench_options():
    import os

    from yolo_sfn.bench.report import script_parser

    args = script_parser("doc").parse_args([])
    assert args.threads == (os.cpu_count() or 1) and args.json_out is None
    assert not hasattr(args, "with_boto3")
    args = script_parser("doc", with_boto3=True).parse_args(["--with-boto3", "--threads", "3"])
    assert args.with_boto3 is True and args.threads == 3
