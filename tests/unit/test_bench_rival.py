"""yolo_sfn.bench.rival's pure parts: darknet GFLOP count, source checks, cfg resizing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from yolo_sfn.bench import rival
from yolo_sfn.darknet.cfg import parse_cfg, parse_cfg_text
from yolo_sfn.errors import InputFileError, ModelError

CFG_DIR = Path(__file__).resolve().parents[2] / "testdata" / "cfg"

ONE_CONV = """
[net]
width=8
height=8
channels=3

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=linear

[convolutional]
filters=6
size=1
stride=2
pad=0
groups=2
activation=linear

[yolo]
mask=0
anchors=10,14
classes=1
num=1
"""


def test_conv_gflop_counts_multiply_adds_twice_with_groups_and_stride():
    net = parse_cfg_text(ONE_CONV)
    first = 2 * 3 * 3 * 3 * 4 * 8 * 8  # 3x3, 3 -> 4 channels, 8x8 out
    second = 2 * 1 * 1 * (4 // 2) * 6 * 4 * 4  # 1x1, groups 2, stride 2 -> 4x4 out
    assert net.conv_gflop == pytest.approx((first + second) / 1e9)


@pytest.mark.parametrize(
    ("name", "gflop"), [("yolov4", 60.10), ("yolov3-tiny", 5.56), ("yolov4-tiny", 6.91)]
)
def test_conv_gflop_of_the_reference_cfgs_at_416(name, gflop):
    """darknet prints 60.1 BFLOPs for yolov4.cfg at 416 (the issue's sgemm-limit figure)."""
    assert parse_cfg(CFG_DIR / f"{name}.cfg", size=416).conv_gflop == pytest.approx(gflop, abs=0.01)


def test_sized_cfg_text_sets_only_the_net_size(tmp_path):
    text = rival.sized_cfg_text(CFG_DIR / "yolov3-tiny.cfg", (96, 160))
    net = parse_cfg_text(text)
    assert net.input_shape[:2] == (96, 160)
    assert rival.conv_gflop(CFG_DIR / "yolov3-tiny.cfg", (96, 160)) == pytest.approx(
        net.conv_gflop
    )


def _files(tmp_path: Path) -> tuple[Path, Path]:
    cfg, weights = tmp_path / "m.cfg", tmp_path / "m.weights"
    cfg.write_text(ONE_CONV)
    weights.write_bytes(b"\0" * 64)
    return cfg, weights


def _meta(cfg: Path | None, weights: Path | None) -> SimpleNamespace:
    """A sidecar's source paths and sha256s, as the converter records them."""
    source = {k: str(v) for k, v in (("cfg", cfg), ("weights", weights)) if v is not None}

    def sha(p: Path | None) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest() if p else ""

    return SimpleNamespace(source=source, cfg_sha256=sha(cfg), weights_sha256=sha(weights))


def test_darknet_source_from_the_sidecar_and_given(tmp_path):
    cfg, weights = _files(tmp_path)
    meta = _meta(cfg, weights)
    model = tmp_path / "m.tflite"
    assert rival.darknet_source(model, meta) == (cfg, weights)
    assert rival.darknet_source(model, meta, str(cfg), str(weights)) == (cfg, weights)


def test_darknet_source_errors_name_the_file(tmp_path):
    cfg, weights = _files(tmp_path)
    model = tmp_path / "m.tflite"
    with pytest.raises(InputFileError, match=r"records no darknet cfg.*--darknet"):
        rival.darknet_source(model, _meta(None, None))
    with pytest.raises(InputFileError, match=r"darknet weights .*gone\.weights not found"):
        rival.darknet_source(model, _meta(cfg, weights), cfg, tmp_path / "gone.weights")
    other = tmp_path / "other.weights"
    other.write_bytes(b"\1" * 64)
    with pytest.raises(InputFileError, match=r"--darknet: .*other\.weights is not the weights"):
        rival.darknet_source(model, _meta(cfg, weights), cfg, other)
    meta = _meta(cfg, weights)
    cfg.write_text(ONE_CONV + "\n# edited after the conversion\n")
    with pytest.raises(InputFileError, match=r"m\.tflite\.json source: .*m\.cfg is not the cfg"):
        rival.darknet_source(model, meta)


def test_opencv_without_the_darknet_importer_is_a_clear_error(monkeypatch, tmp_path):
    import cv2

    cfg, weights = _files(tmp_path)
    monkeypatch.delattr(cv2.dnn, "readNetFromDarknet")
    with pytest.raises(ModelError, match=r"no darknet importer.*opencv-python-headless<5"):
        rival.opencv_net(cfg, weights, 1)
