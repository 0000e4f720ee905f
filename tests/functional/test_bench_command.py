"""``yolo-sfn bench`` end to end on a small converted model (no timing assertions: the numbers
are checked for shape and consistency, never against a speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yolo_sfn import cli
from yolo_sfn.darknet.cfg import parse_cfg

pytest.importorskip("cv2")

FAST = ["--runs", "3", "--cold-repeats", "1", "--memory-sizes", "1769", "--threads", "1"]


@pytest.fixture(scope="module")
def small(random_model):
    return random_model("yolov3-tiny", size=96)


def test_bench_vs_opencv_reports_both_engines_and_the_sgemm_limit(small, capsys):
    rc = cli.main(["bench", "--model", str(small.tflite), *FAST, "--settle", "0",
                   "--vs-opencv", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    r = json.loads(out)
    v = r["vs_opencv"]
    assert Path(v["cfg"]).resolve() == small.cfg.resolve()  # the sidecar's source, by default
    assert Path(v["weights"]).resolve() == small.weights.resolve()
    assert v["litert"]["n"] == v["opencv"]["n"] == 3
    assert len(v["sgemm_interleaved_gflops"]) == 3 and v["sgemm_gflops"] > 0
    assert v["gflop"] == pytest.approx(parse_cfg(small.cfg, size=96).conv_gflop)
    lite, cv = v["litert"]["median_ms"], v["opencv"]["median_ms"]
    assert lite > 0 and cv > 0
    assert v["litert_over_opencv"] == pytest.approx(lite / cv)
    assert v["sgemm_limit_ms"] == pytest.approx(1000 * v["gflop"] / v["sgemm_gflops"])
    assert v["limit_over_litert"] == pytest.approx(v["sgemm_limit_ms"] / lite)
    assert v["openblas"]["threads"] == 1
    assert r["steady"]["infer"]["median_ms"] > 0 and r["cost"]["rows"][0]["memory_mb"] == 1769
    steady = r["steady"]
    assert set(steady["candidates"]) == set(steady["detections"]) and steady["candidate_cap"]
    assert all(steady["candidates"][k] >= n for k, n in steady["detections"].items())


def test_bench_text_has_the_opencv_section(small, capsys):
    rc = cli.main(["bench", "--model", str(small.tflite), *FAST, "--settle", "0", "--vs-opencv"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "vs OpenCV DNN" in out and "sgemm limit (" in out and "this model / OpenCV time" in out


def test_a_bad_model_is_one_clean_error(tmp_path, capsys):
    fake = tmp_path / "f.tflite"
    fake.write_text("not a model")
    (tmp_path / "f.tflite.json").write_text("{}")
    rc = cli.main(["bench", "--model", str(fake), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("yolo-sfn: error:") and "Traceback" not in err
    rc = cli.main(["bench", "--model", str(tmp_path / "gone.tflite"), *FAST])
    assert rc == 2 and "gone.tflite: model file not found" in capsys.readouterr().err


def test_bench_vs_opencv_refuses_other_weights_before_measuring(small, tmp_path, capsys):
    other = tmp_path / "other.weights"
    other.write_bytes(small.weights.read_bytes()[:-4] + b"\0\0\0\0")
    rc = cli.main(["bench", "--model", str(small.tflite), *FAST, "--vs-opencv",
                   "--darknet", str(small.cfg), str(other)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--darknet" in err and "other.weights is not the weights" in err


def test_darknet_without_vs_opencv_is_an_error(small, capsys):
    rc = cli.main(["bench", "--model", str(small.tflite), "--darknet", str(small.cfg),
                   str(small.weights)])
    assert rc == 2 and "--darknet is only used with --vs-opencv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vs-opencv", "--settle", "-1"], "--settle must be 0..60 seconds, got -1.0"),
        (["--vs-opencv", "--settle", "inf"], "--settle must be 0..60 seconds, got inf"),
        (["--settle", "1"], "--settle is only used with --vs-opencv"),
        (["--memory-sizes", "1769,,1769"], "1769 given twice"),
        (["--runs", "0"], "--runs must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--cold-repeats", "-2"], "--cold-repeats must be >= 1, got -2"),
        (["--memory-sizes", "abc"], "--memory-sizes 'abc'"),
        (["--memory-sizes", "64"], "--memory-sizes '64': Lambda memory must be 128..10240 MB"),
    ],
)
def test_bad_options_are_errors_naming_the_option(argv, message, capsys):
    """Refused before anything is measured (no model is even loaded: the path is bogus)."""
    rc = cli.main(["bench", "--model", "/nonexistent/m.tflite", *argv])
    assert rc == 2 and message in capsys.readouterr().err
