"""Converter vs OpenCV's darknet importer (an independent implementation of darknet).

(a) random weights: the TFLite heads, decoded by ``yolo_sfn.core.decode``, equal OpenCV's
    ``[yolo]`` rows (cx, cy, w, h normalized, obj, obj * cls) within 1e-3 on the same blob.
(b) real yolov3-tiny: full pipeline (stretch, score 0.1, class-aware NMS 0.45) pairs 1:1 with
    OpenCV + ``cv2.dnn.NMSBoxesBatched`` (same class, IoU >= 0.95, |score diff| <= 0.01).
(c) int8 real yolov3-tiny calibrated on testdata/images: most fp32 detections are matched.

OpenCV zeroes class scores below ``[yolo] thresh`` (default 0.2), so it gets a cfg copy with
``thresh=0.001`` (see /work/shared/notes/oracle.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2.dnn, "readNetFromDarknet"):  # OpenCV 5 removed it
    pytest.skip(
        "cv2.dnn.readNetFromDarknet unavailable (needs opencv < 5)", allow_module_level=True
    )

from yolo_sfn.core.decode import decode_heads  # noqa: E402
from yolo_sfn.core.image import load_image_file  # noqa: E402
from yolo_sfn.core.postprocess import postprocess  # noqa: E402
from yolo_sfn.core.preprocess import to_network_input  # noqa: E402
from yolo_sfn.core.runtime import Model  # noqa: E402

IMAGES = sorted((Path(__file__).resolve().parents[2] / "testdata" / "images").iterdir())
ATOL = 1e-3

# (cfg, --size, pytest marks); yolov4 at 320 keeps the first (uncached) conversion near 30 s
RANDOM_CASES = [
    pytest.param("yolov3-tiny", 416, id="yolov3-tiny-416"),
    pytest.param("yolov4-tiny", 416, id="yolov4-tiny-416"),
    pytest.param("yolov4", 320, id="yolov4-320"),
    pytest.param("yolov3", 416, id="yolov3-416", marks=pytest.mark.slow),
]


def oracle_net(cfg: Path, weights: Path, size: int | None, tmp: Path):
    """cv2.dnn net from a cfg copy with thresh=0.001 in each [yolo] (and width/height=size)."""
    text = cfg.read_text()
    text = re.sub(r"^\[yolo\]", "[yolo]\nthresh=0.001", text, flags=re.M)
    if size is not None:
        text = re.sub(r"^(width|height)\s*=.*$", lambda m: f"{m.group(1)}={size}", text, flags=re.M)
    copy = tmp / f"oracle-{cfg.name}"
    copy.write_text(text)
    return cv2.dnn.readNetFromDarknet(str(copy), str(weights))


def oracle_rows(net, batch_u8: np.ndarray) -> np.ndarray:
    """(1, H, W, 3) uint8 RGB -> OpenCV [yolo] rows (N, 5 + C), all heads concatenated."""
    net.setInput(batch_u8.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255))
    return np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))


def our_rows(model: Model, batch_u8: np.ndarray) -> np.ndarray:
    boxes, obj, cls = decode_heads(model.run(batch_u8), model.meta)
    return np.concatenate([boxes, obj[:, None], cls], axis=1)


def image_batch(path: Path, hw: tuple[int, int]) -> tuple[np.ndarray, object]:
    return to_network_input(load_image_file(path), hw, "stretch")


# --- (a) random weights ------------------------------------------------------------------
@pytest.mark.parametrize(("cfg", "size"), RANDOM_CASES)
def test_random_weights_match_opencv(random_model, cfg, size, tmp_path, record_property):
    m = random_model(cfg, size=size, seed=7)
    model = Model.load(m.tflite)
    net = oracle_net(m.cfg, m.weights, size, tmp_path)
    worst_box = worst_score = 0.0
    for img in IMAGES[:2]:
        batch, _ = image_batch(img, model.input_hw)
        ours, ref = our_rows(model, batch), oracle_rows(net, batch)
        assert ours.shape == ref.shape
        assert np.isfinite(ours).all()
        worst_box = max(worst_box, float(np.abs(ours[:, :4] - ref[:, :4]).max()))
        worst_score = max(worst_score, float(np.abs(ours[:, 4:] - ref[:, 4:]).max()))
    record_property("max_abs_box", worst_box)
    record_property("max_abs_score", worst_score)
    print(f"{cfg}@{size}: max |box diff| {worst_box:.2e}, max |score diff| {worst_score:.2e}")
    assert worst_box <= ATOL and worst_score <= ATOL


@pytest.mark.parametrize(
    ("precision", "box_tol", "score_tol"), [("fp16", 1e-3, 1e-3), ("int8", 5e-2, 2e-2)]
)
def test_reduced_precision_random_weights_close_to_opencv(
    random_model, precision, box_tol, score_tol, tmp_path
):
    """yolov4-tiny (route groups, stride-2 explicit pads) in fp16 / full-integer int8."""
    calibration = IMAGES[0].parent if precision == "int8" else None
    m = random_model("yolov4-tiny", size=416, seed=7, precision=precision, calibration=calibration)
    model = Model.load(m.tflite)
    assert model.meta.precision == precision
    net = oracle_net(m.cfg, m.weights, 416, tmp_path)
    batch, _ = image_batch(IMAGES[0], model.input_hw)
    ours, ref = our_rows(model, batch), oracle_rows(net, batch)
    box, score = np.abs(ours[:, :4] - ref[:, :4]).max(), np.abs(ours[:, 4:] - ref[:, 4:]).max()
    print(f"yolov4-tiny {precision}: max |box diff| {box:.2e}, max |score diff| {score:.2e}")
    assert box <= box_tol and score <= score_tol


def test_random_weights_give_varied_scores(random_model):
    """Guard against a vacuous comparison: random heads must produce spread-out scores."""
    m = random_model("yolov4-tiny", size=416, seed=7)
    model = Model.load(m.tflite)
    batch, _ = image_batch(IMAGES[0], model.input_hw)
    rows = our_rows(model, batch)
    assert rows[:, 4].std() > 0.02 and rows[:, 5:].max() > 0.3


# --- (b) real yolov3-tiny, full pipeline ----------------------------------------------------
def _iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (N, 4), b (M, 4) xyxy -> (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-12)


def opencv_detections(net, batch_u8, src_hw, score, iou):
    """OpenCV rows -> (boxes xyxy original pixels, scores, classes) after NMSBoxesBatched."""
    rows = oracle_rows(net, batch_u8)
    h, w = src_hw
    cls_scores = rows[:, 5:]
    r, c = np.nonzero(cls_scores >= score)  # every (row, class) pair, like darknet / ours
    s = cls_scores[r, c]
    cx, cy, bw, bh = (rows[r, k] for k in range(4))
    xywh = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], 1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), c.tolist(), score, iou)
    keep = np.asarray(keep, dtype=int).reshape(-1)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)[keep]
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
    return xyxy, s[keep], c[keep]


def pair_up(a_boxes, a_scores, a_cls, b_boxes, b_scores, b_cls, *, iou=0.95, dscore=0.01):
    """Greedy 1:1 pairing (best IoU first); returns (pairs, unmatched_a, unmatched_b)."""
    m = _iou_xyxy(a_boxes, b_boxes) if len(a_boxes) and len(b_boxes) else np.zeros((0, 0))
    ok = (m >= iou) & (a_cls[:, None] == b_cls[None, :])
    ok &= np.abs(a_scores[:, None] - b_scores[None, :]) <= dscore
    pairs, used_a, used_b = [], set(), set()
    for i, j in sorted(zip(*np.nonzero(ok), strict=True), key=lambda ij: -m[ij]):
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return (
        pairs,
        sorted(set(range(len(a_boxes))) - used_a),
        sorted(set(range(len(b_boxes))) - used_b),
    )


def _ours(model, img, score):
    batch, transform = image_batch(img, model.input_hw)
    dets = postprocess(
        model.run(batch), model.meta, transform, score=score, iou=0.45, nms_kind="greedy"
    )
    arr = lambda f, dt: np.array([f(d) for d in dets], dtype=dt)  # noqa: E731
    boxes = arr(lambda d: d.box, np.float64).reshape(-1, 4)
    return (
        batch,
        transform,
        boxes,
        arr(lambda d: d.score, np.float64),
        arr(lambda d: d.class_id, int),
    )


@pytest.mark.parametrize("img", IMAGES, ids=lambda p: p.name)
def test_real_yolov3_tiny_matches_opencv(demo_model, demo_darknet, img, tmp_path):
    model = Model.load(demo_model)
    net = oracle_net(demo_darknet["cfg"], demo_darknet["weights"], None, tmp_path)
    batch, transform, boxes, scores, classes = _ours(model, img, 0.1)
    ref = opencv_detections(net, batch, transform.src_hw, 0.1, 0.45)
    pairs, lost, extra = pair_up(boxes, scores, classes, *ref)
    print(f"{img.name}: ours {len(boxes)}, opencv {len(ref[0])}, paired {len(pairs)}")
    assert len(boxes) > 0
    assert not lost, f"{img.name}: our detections {lost} have no OpenCV partner"
    assert not extra, f"{img.name}: OpenCV detections {extra} have no partner"


# --- (c) int8 ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_demo(converted_model, demo_darknet):
    d = demo_darknet
    return converted_model(
        d["cfg"], d["weights"], names=d["names"], precision="int8", calibration=IMAGES[0].parent
    )


def test_int8_matches_most_fp32_detections(demo_model, int8_demo, record_property):
    fp32, int8 = Model.load(demo_model), Model.load(int8_demo)
    assert int8.meta.precision == "int8"
    total = matched = 0
    for img in IMAGES:
        _, _, b32, s32, c32 = _ours(fp32, img, 0.25)
        _, _, b8, s8, c8 = _ours(int8, img, 0.25)
        pairs, _, _ = pair_up(b32, s32, c32, b8, s8, c8, iou=0.5, dscore=0.15)
        total += len(b32)
        matched += len(pairs)
    pct = 100.0 * matched / max(total, 1)
    record_property("int8_matched_pct", pct)
    print(f"int8 vs fp32 at score 0.25: {matched}/{total} fp32 detections matched ({pct:.0f}%)")
    assert total > 0 and pct >= 75.0
