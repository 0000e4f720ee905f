"""``yolo-sfn bench`` end to end on a small converted model (no timing assertions: the numbers
are checked for shape and consistency, never against a speed)."""

from __future__ import annotations

import json
import re
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


def _template_batch_size() -> int:
    from yolo_sfn.local.template import find_project_root, load_cfn_yaml

    doc = load_cfn_yaml(find_project_root() / "template.yaml")
    return int(doc["Parameters"]["BatchSize"]["Default"])


def test_bench_json_prices_four_invocations_per_batch_of_the_template_default(small, capsys):
    rc = cli.main(["bench", "--model", str(small.tflite), *FAST, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    co = json.loads(out)["cost"]
    batch = _template_batch_size()
    assert co["batch_size"] == batch and co["batch_size_from"] == "template.yaml BatchSize default"
    assert co["invocations_per_batch"] == 4
    assert co["invocations_per_image"] == pytest.approx(4 / batch)
    req = 1000 * 4 / batch * co["price_per_request"]
    (row,) = co["rows"]
    assert row["request_usd_per_1000"] == pytest.approx(req)
    assert row["usd_per_1000"]["x86_64"] == pytest.approx(
        row["gb_s_per_1000"] * co["prices"]["x86_64"] + req)
    dep = co["deployed"]
    stages = {s["stage"]: s for s in dep["stages"]}
    assert set(stages) == {"preprocess", "infer", "postprocess", "store"}
    measured = [s for s in stages.values() if s["est_ms_per_image"] is not None]
    assert len(measured) == 3 and stages["store"]["gb_s_per_1000"] is None
    for s in measured:  # GB-s per 1,000 images = ms per image x GB
        assert s["gb_s_per_1000"] == pytest.approx(s["est_ms_per_image"] * s["memory_mb"] / 1024)
    assert dep["gb_s_per_1000"] == pytest.approx(sum(s["gb_s_per_1000"] for s in measured))
    assert dep["request_usd_per_1000"] == pytest.approx(req)
    for arch in ("x86_64", "arm64"):
        assert dep["usd_per_1000"][arch] == pytest.approx(
            dep["gb_s_per_1000"] * co["prices"][arch] + req)


def _figures(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e[-+]\d+)?", line)]


def test_bench_text_at_batch_size_10_recomputes_from_its_printed_figures(small, capsys):
    rc = cli.main(["bench", "--model", str(small.tflite), *FAST, "--batch-size", "10"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "10 images per batch (--batch-size), 4 invocations per batch" in out
    assert "= 0.4 invocations per image" in out
    assert not re.search(r"(?<![\d.])4 invocations per image", out)  # the per-image design
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("Lambda cost per 1,000 images as"))
    x86 = _figures(lines[head].split("x86 $")[1])[0]
    price_req = _figures(lines[head].split("GB-s, $")[1])[0] / 1e6
    total = next(ln for ln in lines[head:] if ln.startswith("total "))
    gb_s = _figures(total)[-1]
    usd, _arm, req = (float(x) for x in re.search(
        r"^x86 USD (\S+), arm64 USD (\S+) per 1,000 images \(of which requests ([^)]+)\)",
        out, re.M).groups())
    assert req == pytest.approx(1000 * 0.4 * price_req, rel=1e-3)  # 400 requests
    assert usd == pytest.approx(gb_s * x86 + req, rel=2e-3)  # 4 significant digits printed
    one = next(i for i, ln in enumerate(lines) if "every stage at one memory size" in ln)
    row = _figures(lines[one + 3])  # memory MB, vCPU, threads, ms, GB-s, x86 USD, arm64 USD
    assert row[0] == 1769 and row[5] == pytest.approx(row[4] * x86 + req, rel=2e-3)
    assert "one memory size" in out and "DIR/cost.json" in out


@pytest.mark.parametrize("bad", ["0", "41", "x"])
def test_a_batch_size_outside_the_template_range_is_refused(bad, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--model", "/nonexistent/m.tflite", "--batch-size", bad])
    assert e.value.code == 2 and "--batch-size" in capsys.readouterr().err
