"""darknet .weights: header versions, consumption check, random writer, BN folding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolo_sfn.cli import main
from yolo_sfn.convert.graph import OIHW_TO_HWIO, load_weights
from yolo_sfn.darknet.cfg import parse_cfg, parse_cfg_text
from yolo_sfn.darknet.weights import (
    BN_EPSILON,
    WeightsReader,
    conv_layout,
    expected_floats,
    random_weights,
    read_header,
    seen_is_int64,
    write_random_weights,
    write_weights_file,
)
from yolo_sfn.errors import InputFileError, WeightsError

CFG_DIR = Path(__file__).resolve().parents[2] / "testdata" / "cfg"

# two convs (BN + plain head) -> yolo; input 3 channels
TINY = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky
[convolutional]
filters=6
size=1
activation=linear
[yolo]
mask=0
anchors=10,14
classes=1
num=1
"""
# floats: conv0 4 beta + 4 gamma + 4 mean + 4 var + 4*3*3*3 kernel; conv1 6 bias + 6*4 kernel
TINY_FLOATS = 16 + 108 + 6 + 24


@pytest.fixture
def tiny():
    return parse_cfg_text(TINY, path="tiny.cfg")


def test_layout_documents_darknet_order(tiny):
    assert conv_layout(tiny.layers[0]) == [
        ("bias", (4,)),
        ("gamma", (4,)),
        ("mean", (4,)),
        ("variance", (4,)),
        ("kernel_oihw", (4, 3, 3, 3)),
    ]
    assert conv_layout(tiny.layers[1]) == [("bias", (6,)), ("kernel_oihw", (6, 4, 1, 1))]
    assert expected_floats(tiny) == TINY_FLOATS


def test_real_yolov3_tiny_size():
    """The published yolov3-tiny.weights is 35,434,956 bytes: 20-byte header + 8,858,734 floats."""
    assert expected_floats(parse_cfg(CFG_DIR / "yolov3-tiny.cfg")) == 8_858_734


@pytest.mark.parametrize(
    ("major", "minor", "wide"),
    [(0, 1, False), (0, 2, True), (1, 0, True), (0, 0, False), (1000, 0, False), (0, 1000, False)],
)
def test_seen_width_rule(major, minor, wide):
    assert seen_is_int64(major, minor) is wide


@pytest.mark.parametrize(("major", "minor", "header_bytes"), [(0, 1, 16), (0, 2, 20)])
def test_both_header_versions_read_back(tiny, tmp_path, major, minor, header_bytes):
    arrays = random_weights(tiny, seed=3)
    p = write_weights_file(tmp_path / "w.weights", arrays, major=major, minor=minor, seen=123456)
    assert p.stat().st_size == header_bytes + 4 * TINY_FLOATS
    h = read_header(p.read_bytes(), p)
    assert (h.major, h.minor, h.seen, h.nbytes) == (major, minor, 123456, header_bytes)
    reader = WeightsReader(p, tiny)
    got = [reader.take(a.shape) for a in arrays]
    reader.finish()
    for a, b in zip(arrays, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_seen_int64(tiny, tmp_path):
    p = write_weights_file(tmp_path / "w.weights", random_weights(tiny), seen=2**40)
    assert read_header(p.read_bytes()).seen == 2**40


def test_too_short_names_file_and_sizes(tiny, tmp_path):
    p = write_weights_file(tmp_path / "short.weights", [np.zeros(TINY_FLOATS - 5, np.float32)])
    with pytest.raises(WeightsError) as e:
        WeightsReader(p, tiny)
    msg = str(e.value)
    assert str(p) in msg and "too short" in msg and "\n" not in msg
    assert f"expected {TINY_FLOATS} floats" in msg and f"got {TINY_FLOATS - 5} floats" in msg
    assert f"{20 + 4 * TINY_FLOATS} bytes" in msg


def test_too_long_names_file_and_sizes(tiny, tmp_path):
    p = write_weights_file(tmp_path / "long.weights", [np.zeros(TINY_FLOATS + 3, np.float32)])
    with pytest.raises(WeightsError) as e:
        load_weights(tiny, p)
    msg = str(e.value)
    assert str(p) in msg and "too long" in msg and "3 left over" in msg
    assert f"expected {TINY_FLOATS} floats" in msg


@pytest.mark.parametrize("nbytes", [0, 11, 17])
def test_truncated_header_or_body(tiny, tmp_path, nbytes):
    p = tmp_path / "h.weights"
    data = np.array([0, 2, 0], "<i4").tobytes() + b"\0" * 16
    p.write_bytes(data[:nbytes] if nbytes < 20 else data)
    with pytest.raises(WeightsError, match=r"h\.weights"):
        WeightsReader(p, tiny)


def test_body_not_whole_floats(tiny, tmp_path):
    p = write_weights_file(tmp_path / "odd.weights", [np.zeros(TINY_FLOATS, np.float32)])
    p.write_bytes(p.read_bytes() + b"\0\0")
    with pytest.raises(WeightsError, match="whole number of float32"):
        WeightsReader(p, tiny)


def test_missing_file(tiny, tmp_path):
    with pytest.raises(InputFileError, match="weights file not found"):
        WeightsReader(tmp_path / "none.weights", tiny)


def test_random_weights_deterministic_and_finite(tmp_path):
    net = parse_cfg(CFG_DIR / "yolov4-tiny.cfg")
    a = write_random_weights(net, tmp_path / "a.weights", seed=5).read_bytes()
    b = write_random_weights(net, tmp_path / "b.weights", seed=5).read_bytes()
    c = write_random_weights(net, tmp_path / "c.weights", seed=6).read_bytes()
    assert a == b and a != c
    h = read_header(a)
    assert (h.major, h.minor) == (0, 2)
    body = np.frombuffer(a[h.nbytes :], "<f4")
    assert body.size == expected_floats(net) and np.isfinite(body).all()
    assert 0.0 < np.abs(body).max() < 10.0


def test_load_weights_folds_batch_norm_like_darknet(tiny, tmp_path):
    arrays = random_weights(tiny, seed=1)
    beta, gamma, mean, var, k_oihw, head_bias, head_k = arrays
    p = write_weights_file(tmp_path / "w.weights", arrays)
    _, loaded = load_weights(tiny, p)
    # darknet BN: gamma * (conv(x) - mean) / (sqrt(var) + 1e-6), plus beta
    x = np.random.default_rng(0).normal(size=(3, 3, 3)).astype(np.float32)  # one 3x3 patch, HWC
    conv = np.einsum("oihw,hwi->o", k_oihw, x)
    want = (conv - mean) / (np.sqrt(var) + BN_EPSILON) * gamma + beta
    got = np.einsum("hwio,hwi->o", loaded[0]["kernel"], x) + loaded[0]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(loaded[1]["kernel"], head_k.transpose(OIHW_TO_HWIO))
    np.testing.assert_array_equal(loaded[1]["bias"], head_bias)


@pytest.mark.parametrize(("delta", "needle"), [(-1, "too short"), (1, "too long")])
def test_cli_reports_weights_error_in_one_line(tiny, tmp_path, capsys, delta, needle):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY)
    w = write_weights_file(tmp_path / "x.weights", [np.zeros(TINY_FLOATS + delta, np.float32)])
    rc = main(
        [
            "model",
            "convert",
            "--cfg",
            str(cfg),
            "--weights",
            str(w),
            "-o",
            str(tmp_path / "m.tflite"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and str(w) in err and needle in err
    assert not (tmp_path / "m.tflite").exists()


def test_negative_variance_is_a_weights_error(tiny, tmp_path):
    arrays = random_weights(tiny, seed=1)
    arrays[3] = -arrays[3]  # conv0 variance
    p = write_weights_file(tmp_path / "neg.weights", arrays)
    with pytest.raises(WeightsError, match=r"neg\.weights: layer 0 .*variance"):
        load_weights(tiny, p)
