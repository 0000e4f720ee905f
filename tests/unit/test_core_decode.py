"""core.decode: darknet formulas by hand, and row-for-row against OpenCV's darknet importer."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from yolo_sfn.core.decode import decode_candidates, decode_heads
from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import HeadMeta, ModelMeta


def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.float64(x)))


def _meta(grid=(2, 3), anchors=((10.0, 20.0), (30.0, 15.0)), net=(32, 48), c=2, **head_kw):
    head = HeadMeta(
        grid=grid, stride=net[0] // grid[0], anchors=[list(a) for a in anchors], **head_kw
    )
    return ModelMeta(
        name="t", input_size=net, num_classes=c, names=[f"c{i}" for i in range(c)], heads=[head]
    )


def test_plain_formula_by_hand():
    meta = _meta(scale_x_y=1.1)
    rng = np.random.default_rng(3)
    head = rng.normal(0, 1.5, meta.head_shape(0)).astype(np.float32)
    boxes, obj, cls = decode_heads([head], meta)
    assert boxes.shape == (12, 4) and obj.shape == (12,) and cls.shape == (12, 2)
    assert boxes.dtype == obj.dtype == cls.dtype == np.float32
    gh, gw = meta.heads[0].grid
    net_h, net_w = meta.input_size
    s = 1.1
    for y in range(gh):
        for x in range(gw):
            for a, (aw, ah) in enumerate(meta.heads[0].anchors):
                r = (y * gw + x) * 2 + a  # OpenCV's row order: y, x, anchor
                t = head[0, y, x, a * 7 : (a + 1) * 7].astype(np.float64)
                exp_box = [
                    (x + _sig(t[0]) * s - (s - 1) / 2) / gw,
                    (y + _sig(t[1]) * s - (s - 1) / 2) / gh,
                    np.exp(t[2]) * aw / net_w,
                    np.exp(t[3]) * ah / net_h,
                ]
                np.testing.assert_allclose(boxes[r], exp_box, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(obj[r], _sig(t[4]), atol=1e-6)
                np.testing.assert_allclose(cls[r], _sig(t[4]) * _sig(t[5:]), atol=1e-6)


def test_new_coords_formula_by_hand():
    meta = _meta(scale_x_y=2.0, new_coords=True)
    rng = np.random.default_rng(4)
    head = rng.uniform(0, 1, meta.head_shape(0)).astype(np.float32)  # already logistic
    boxes, obj, cls = decode_heads([head], meta)
    y, x, a = 1, 2, 1
    r = (y * 3 + x) * 2 + a
    t = head[0, y, x, a * 7 : (a + 1) * 7].astype(np.float64)
    exp_box = [
        (x + t[0] * 2 - 0.5) / 3,
        (y + t[1] * 2 - 0.5) / 2,
        (t[2] * 2) ** 2 * 30 / 48,
        (t[3] * 2) ** 2 * 15 / 32,
    ]
    np.testing.assert_allclose(boxes[r], exp_box, rtol=1e-5)
    np.testing.assert_allclose(obj[r], t[4], rtol=1e-6)
    np.testing.assert_allclose(cls[r], t[4] * t[5:], rtol=1e-6)


def test_extreme_logits_no_overflow():
    meta = _meta()
    head = np.full(meta.head_shape(0), -1000.0, np.float32)
    head.reshape(1, 2, 3, 2, 7)[..., 2:4] = 0  # (1, H, W, A, 5 + C) view: tw, th
    with np.errstate(all="raise"):
        _, obj, cls = decode_heads([head], meta)
    assert obj.max() == 0 and cls.max() == 0


def test_multiple_heads_concatenate_in_meta_order():
    h1 = HeadMeta(grid=(1, 1), stride=32, anchors=[[4, 4]])
    h2 = HeadMeta(grid=(2, 2), stride=16, anchors=[[8, 8]])
    meta = ModelMeta(name="t", input_size=(32, 32), num_classes=1, names=["a"], heads=[h1, h2])
    heads = [np.zeros(meta.head_shape(0), np.float32), np.zeros(meta.head_shape(1), np.float32)]
    heads[1][0, 1, 0, 4] = 5.0  # head 2, y=1, x=0 -> row 1 + 2 = 3
    boxes, obj, _ = decode_heads(heads, meta)
    assert boxes.shape == (5, 4)
    assert int(np.argmax(obj)) == 3
    np.testing.assert_allclose(boxes[3, :2], [0.25, 0.75])
    np.testing.assert_allclose(boxes[0], [0.5, 0.5, 4 / 32, 4 / 32])


def test_candidates_are_the_rows_above_objectness():
    meta = _meta(c=3)
    head = np.random.default_rng(5).normal(0, 2, meta.head_shape(0)).astype(np.float32)
    boxes, obj, cls = decode_heads([head], meta)
    rows, b2, c2 = decode_candidates([head], meta, 0.5)
    np.testing.assert_array_equal(rows, np.flatnonzero(obj >= 0.5))
    np.testing.assert_array_equal(b2, boxes[rows])
    np.testing.assert_array_equal(c2, cls[rows])
    rows, b2, c2 = decode_candidates([head], meta, 1.5)
    assert rows.shape == (0,) and b2.shape == (0, 4) and c2.shape == (0, 3)


def test_wrong_head_shape_is_model_error():
    meta = _meta()
    with pytest.raises(ModelError, match="head 0"):
        decode_heads([np.zeros((1, 3, 2, 14), np.float32)], meta)
    with pytest.raises(ModelError, match="heads"):
        decode_heads([], meta)


# --- oracle: OpenCV's darknet importer --------------------------------------------------
_CFG = """[net]
width=64
height=32
channels=3

[maxpool]
size=8
stride=8

[convolutional]
filters=16
size=1
stride=1
pad=1
activation={act}

[yolo]
mask=1,2
anchors=5,6, 20,30, 40,50
classes=3
num=3
thresh=0.001
scale_x_y={sxy}
{extra}
"""


@pytest.mark.skipif(not hasattr(cv2.dnn, "readNetFromDarknet"), reason="OpenCV >= 5 has no darknet")
@pytest.mark.parametrize("new_coords,sxy", [(False, 1.0), (False, 1.2), (True, 2.0)])
def test_rows_match_opencv_yolo_layer(tmp_path, new_coords, sxy):
    cfg = _CFG.format(
        act="logistic" if new_coords else "linear",
        sxy=sxy,
        extra="new_coords=1" if new_coords else "",
    )
    (tmp_path / "t.cfg").write_text(cfg)
    rng = np.random.default_rng(11)
    w = rng.normal(0, 2, (16, 3, 1, 1)).astype(np.float32)
    b = rng.normal(0, 1, 16).astype(np.float32)
    (tmp_path / "t.weights").write_bytes(
        struct.pack("<iiiq", 0, 2, 0, 0) + b.tobytes() + w.tobytes()
    )
    net = cv2.dnn.readNetFromDarknet(str(tmp_path / "t.cfg"), str(tmp_path / "t.weights"))
    img = rng.integers(0, 256, (32, 64, 3), np.uint8)
    net.setInput(cv2.dnn.blobFromImage(img, 1 / 255, (64, 32), swapRB=True, crop=False))
    names = list(net.getLayerNames())
    permute = next(n for n in names if n.startswith("permute"))
    head_nhwc, yolo = net.forward([permute, names[-1]])  # (1, 4, 8, 16), (64, 8)
    meta = ModelMeta(
        name="t",
        input_size=(32, 64),
        num_classes=3,
        names=["a", "b", "c"],
        heads=[HeadMeta((4, 8), 8, [[20, 30], [40, 50]], scale_x_y=sxy, new_coords=new_coords)],
    )
    boxes, obj, cls = decode_heads([head_nhwc], meta)
    np.testing.assert_allclose(boxes, yolo[:, :4], atol=1e-5)
    np.testing.assert_allclose(obj, yolo[:, 4], atol=1e-6)
    opencv_cls = yolo[:, 5:]
    kept = opencv_cls > 0  # OpenCV zeroes scores below the [yolo] thresh (0.001)
    np.testing.assert_allclose(cls[kept], opencv_cls[kept], atol=1e-6)
    assert np.all(cls[~kept] <= 0.0011)
