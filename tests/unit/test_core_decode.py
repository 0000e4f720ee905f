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


def _two_heads(new_coords: bool, c: int = 3) -> ModelMeta:
    kw = {"new_coords": new_coords, "scale_x_y": 2.0 if new_coords else 1.05}
    heads = [
        HeadMeta(grid=(4, 6), stride=8, anchors=[[10.0, 14.0], [23.0, 27.0], [37.0, 58.0]], **kw),
        HeadMeta(grid=(2, 3), stride=16, anchors=[[81.0, 82.0], [135.0, 169.0]], **kw),
    ]
    return ModelMeta(name="two", input_size=(32, 48), num_classes=c,
                     names=[f"c{i}" for i in range(c)], heads=heads)


@pytest.mark.parametrize("new_coords", [False, True])
@pytest.mark.parametrize("score", [0.0, 1e-30, 0.05, 0.25, 0.6, 1.0])
def test_compact_heads_give_exactly_the_same_detections(new_coords, score):
    """Infer hands Postprocess only the rows decode_candidates reads: same candidates, same
    detections, at the threshold used and any higher one."""
    from yolo_sfn.core.decode import compact_heads, expand_heads, is_compact
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input

    meta = _two_heads(new_coords)
    rng = np.random.default_rng(int(score * 100) + new_coords)
    heads = []
    for i in range(len(meta.heads)):
        h = rng.normal(-1.0, 2.0, meta.head_shape(i)).astype(np.float32)
        if new_coords:  # the graph applied the logistic already: values in [0, 1]
            h = (1.0 / (1.0 + np.exp(-h))).astype(np.float32)
        rows = h.reshape(-1, 5 + meta.num_classes)
        rows[::7, 4] = np.nan  # an fp16 overflow upstream: never an objectness that passes
        rows[3::11, 5] = np.inf
        heads.append(h)
    if score == 0.0:  # a NaN row dropped at 0 would come back as objectness 0: never compact
        assert compact_heads(heads, meta, score) is None
        return
    packed = compact_heads(heads, meta, score)
    assert is_compact(packed) and not is_compact({"head_0": heads[0]})
    frac = sum(packed[f"rows_{i}"].size for i in range(2)) / sum(
        h.size // (5 + meta.num_classes) for h in heads)
    assert compact_heads(heads, meta, score, max_fraction=frac + 1e-9) is not None
    assert (compact_heads(heads, meta, score, max_fraction=frac * 0.99) is None) == (frac > 0)
    kept = sum(packed[f"rows_{i}"].size for i in range(2))
    total = sum(h.size // (5 + meta.num_classes) for h in heads)
    assert kept < total
    back = expand_heads(packed, meta)
    assert [b.shape for b in back] == [h.shape for h in heads]
    want = decode_candidates(heads, meta, score)
    got = decode_candidates(back, meta, score)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    _, t = to_network_input(np.zeros((60, 80, 3), np.uint8), meta.input_size)
    for w, g in zip(want, decode_candidates(packed, meta, score), strict=True):
        np.testing.assert_array_equal(g, w)  # compact rows decoded directly
    for s in {score, min(1.0, score + 0.1)}:
        dense = postprocess(heads, meta, t, score=s)
        assert postprocess(back, meta, t, score=s) == dense
        assert postprocess(packed, meta, t, score=s) == dense
    if score == 0.25:  # not only empty lists compared
        assert postprocess(packed, meta, t, score=score)


def test_expand_refuses_compact_heads_of_another_model():
    from yolo_sfn.core.decode import compact_heads, expand_heads

    meta = _two_heads(False)
    heads = [np.zeros(meta.head_shape(i), np.float32) for i in range(2)]
    packed = compact_heads(heads, meta, 0.01)  # zero logits: objectness 0.5, every row kept
    with pytest.raises(ModelError, match="1 compact heads, metadata declares 2"):
        expand_heads({k: v for k, v in packed.items() if not k.endswith("_1")}, meta)
    packed["rows_1"] = packed["rows_1"] + 1000
    with pytest.raises(ModelError, match="compact head 1 does not fit"):
        expand_heads(packed, meta)
    with pytest.raises(ModelError, match="compact head 1 does not fit"):
        decode_candidates(packed, meta, 0.01)
    packed["rows_1"] = packed["rows_1"].astype(np.float32)
    with pytest.raises(ModelError, match="compact head 1 does not fit"):
        expand_heads(packed, meta)


# --- region (YOLOv2) and Gaussian_yolo heads ---------------------------------------------------
def test_region_formula_by_hand():
    """darknet get_region_box: anchors in grid cells (stored in the sidecar as pixels),
    softmax class probabilities times the logistic objectness."""
    grid_anchors = ((1.5, 2.0), (3.0, 1.0))
    net, grid = (64, 96), (2, 3)
    px = [[aw * net[1] / grid[1], ah * net[0] / grid[0]] for aw, ah in grid_anchors]
    meta = _meta(grid=grid, anchors=px, net=net, c=3, kind="region", softmax=True)
    head = np.random.default_rng(5).normal(0, 1.5, meta.head_shape(0)).astype(np.float32)
    boxes, obj, cls = decode_heads([head], meta)
    y, x, a = 1, 2, 1
    r = (y * grid[1] + x) * 2 + a
    t = head[0, y, x, a * 8 : (a + 1) * 8].astype(np.float64)
    exp_box = [(x + _sig(t[0])) / grid[1], (y + _sig(t[1])) / grid[0],
               np.exp(t[2]) * grid_anchors[a][0] / grid[1],
               np.exp(t[3]) * grid_anchors[a][1] / grid[0]]
    np.testing.assert_allclose(boxes[r], exp_box, rtol=1e-5, atol=1e-6)
    soft = np.exp(t[5:] - t[5:].max())
    soft /= soft.sum()
    np.testing.assert_allclose(cls[r], _sig(t[4]) * soft, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cls.sum(axis=1), obj, rtol=1e-5)  # softmax sums to 1


def test_gaussian_yolo_formula_and_uncertainty_by_hand():
    """darknet get_gaussian_yolo_box / get_gaussian_yolo_detections: row = mu_x, sigma_x,
    mu_y, sigma_y, mu_w, sigma_w, mu_h, sigma_h, obj, classes; score = obj * cls *
    (1 - mean sigmoid(sigma))."""
    from yolo_sfn.core.decode import decode_candidates_uc, uncertainty

    meta = _meta(scale_x_y=1.1, kind="gaussian_yolo")
    assert meta.head_shape(0) == (1, 2, 3, 2 * 11)
    head = np.random.default_rng(6).normal(0, 1.5, meta.head_shape(0)).astype(np.float32)
    boxes, obj, cls = decode_heads([head], meta)
    y, x, a, s = 1, 0, 1, 1.1
    r = (y * 3 + x) * 2 + a
    t = head[0, y, x, a * 11 : (a + 1) * 11].astype(np.float64)
    aw, ah = meta.heads[0].anchors[a]
    exp_box = [(x + _sig(t[0]) * s - (s - 1) / 2) / 3, (y + _sig(t[2]) * s - (s - 1) / 2) / 2,
               np.exp(t[4]) * aw / 48, np.exp(t[6]) * ah / 32]
    np.testing.assert_allclose(boxes[r], exp_box, rtol=1e-5, atol=1e-6)
    uc = _sig(t[[1, 3, 5, 7]])
    np.testing.assert_allclose(obj[r], _sig(t[8]), atol=1e-6)
    np.testing.assert_allclose(cls[r], _sig(t[8]) * _sig(t[9:]) * (1 - uc.mean()), atol=1e-6)
    rows, _, _, uc_logits = decode_candidates_uc([head], meta, 0.0)
    np.testing.assert_array_equal(rows, np.arange(12))
    np.testing.assert_allclose(uncertainty(uc_logits[r]), uc, atol=1e-6)
    plain = _meta()
    assert decode_candidates_uc([np.zeros(plain.head_shape(0), np.float32)], plain, 0.0)[3] is None


@pytest.mark.parametrize("kind", ["yolo", "region", "region-softmax", "gaussian_yolo"])
@pytest.mark.parametrize("score", [0.05, 0.5, 0.9])
def test_compact_heads_decode_bit_for_bit_for_every_head_kind(kind, score):
    """Postprocess decodes Infer's compact rows directly: the same candidates, uncertainty
    and detections, bit for bit, as the dense heads, for each head kind the converter writes."""
    from yolo_sfn.core.decode import compact_heads, decode_candidates_uc, expand_heads
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input

    kw = {"kind": "region", "softmax": True} if kind == "region-softmax" else {"kind": kind}
    meta = _meta(grid=(6, 8), net=(48, 64), c=4, **kw)
    head = np.random.default_rng(7).normal(0, 2, meta.head_shape(0)).astype(np.float32)
    packed = compact_heads([head], meta, score)
    assert packed is not None and 0 < packed["rows_0"].size < 6 * 8 * 2
    want = decode_candidates_uc([head], meta, score)
    for got in (decode_candidates_uc(packed, meta, score),
                decode_candidates_uc(expand_heads(packed, meta), meta, score)):
        assert (got[3] is None) == (want[3] is None) == (kind != "gaussian_yolo")
        for w, g in zip(want, got, strict=True):
            if w is not None:
                np.testing.assert_array_equal(g, w)
    _, t = to_network_input(np.zeros((60, 80, 3), np.uint8), meta.input_size)
    dense = postprocess([head], meta, t, score=score)
    assert postprocess(packed, meta, t, score=score) == dense
    assert dense or score == 0.9  # not only empty lists compared
