"""core.boxes and core.nms on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolo_sfn.core.boxes import (
    clip_boxes_xyxy,
    diou_xyxy,
    iou_xyxy,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from yolo_sfn.core.nms import nms


def test_xywh_xyxy_conversions():
    xywh = np.array([[10, 20, 4, 6], [0, 0, 2, 2]], np.float32)
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[8, 17, 12, 23], [-1, -1, 1, 1]])
    assert xyxy.dtype == np.float32
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh.tolist() == [[10, 20, 4, 6], [0, 0, 2, 2]]  # input untouched


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.floats(-1e3, 1e3, width=32)] * 2, *[st.floats(0, 1e3, width=32)] * 2),
        min_size=1,
        max_size=20,
    )
)
def test_conversion_round_trip(rows):
    xywh = np.array(rows, np.float32)
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(xywh)), xywh, atol=1e-3, rtol=1e-5)


def test_clip():
    b = np.array([[-5, -5, 50, 50], [10, 10, 200, 300]], np.float32)
    c = clip_boxes_xyxy(b, 100, 80)
    np.testing.assert_array_equal(c, [[0, 0, 50, 50], [10, 10, 100, 80]])
    assert b[0, 0] == -5  # not modified in place


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    m = iou_xyxy(a, b)
    assert m.shape == (2, 3) and m.dtype == np.float32
    np.testing.assert_allclose(m[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_array_equal(m[1], [0, 0, 0])  # empty box: 0, no NaN


def test_diou_matches_darknet_box_diou_nms():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10]], np.float32)
    # centres 5 apart; enclosing box 15 x 10 -> c^2 = 325; iou = 1/3
    beta = 0.6
    np.testing.assert_allclose(diou_xyxy(a, b, beta)[0, 0], 1 / 3 - (25 / 325) ** beta, rtol=1e-5)
    np.testing.assert_allclose(diou_xyxy(a, a, beta)[0, 0], 1.0)


# --- NMS ----------------------------------------------------------------------------------
BOXES = np.array(
    [
        [0, 0, 10, 10],  # 0
        [1, 0, 11, 10],  # 1: IoU 0.818 with 0
        [20, 20, 30, 30],  # 2: far away
        [0, 0, 10, 10],  # 3: same box as 0, other class
    ],
    np.float32,
)


def test_greedy_suppresses_within_class_only():
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(nms(BOXES, scores, classes, 0.5), [0, 2, 3])


def test_greedy_threshold_is_strict_greater():
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU exactly 1/3
    s = np.array([0.9, 0.8], np.float32)
    c = np.zeros(2, int)
    np.testing.assert_array_equal(nms(b, s, c, 1 / 3 + 1e-6), [0, 1])
    np.testing.assert_array_equal(nms(b, s, c, 0.3), [0])


def test_greedy_is_not_transitive():
    # 0 suppresses 1; 2 overlaps 1 but not 0, so it survives
    b = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], np.float32)
    s = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_array_equal(nms(b, s, np.zeros(3, int), 0.4), [0, 2])


def test_ties_break_by_index_and_order_is_score_desc():
    scores = np.array([0.5, 0.5, 0.9, 0.5], np.float32)
    classes = np.array([0, 0, 1, 1])
    keep = nms(BOXES, scores, classes, 0.5)
    # class 0: 0 beats 1 (same score, lower index); class 1: 2 and 3 don't overlap
    np.testing.assert_array_equal(keep, [2, 0, 3])


def test_diou_suppresses_less_when_centres_are_far():
    # IoU 0.5 but centres apart: greedy at 0.45 suppresses, DIoU (0.5 - penalty) does not
    b = np.array([[0, 0, 12, 10], [4, 0, 16, 10]], np.float32)
    s = np.array([0.9, 0.8], np.float32)
    c = np.zeros(2, int)
    assert iou_xyxy(b[:1], b[1:])[0, 0] == pytest.approx(0.5)
    np.testing.assert_array_equal(nms(b, s, c, 0.45, kind="greedy"), [0])
    np.testing.assert_array_equal(nms(b, s, c, 0.45, kind="diou", beta=0.6), [0, 1])
    # concentric boxes: DIoU == IoU
    b2 = np.array([[0, 0, 10, 10], [1, 1, 9, 9]], np.float32)
    np.testing.assert_array_equal(nms(b2, s, c, 0.6, kind="diou"), [0])


def test_nms_empty_and_bad_kind():
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).shape == (0,)
    with pytest.raises(ValueError, match="kind"):
        nms(BOXES, np.ones(4), np.zeros(4, int), kind="soft")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_nms_invariants(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], 1).astype(np.float32)
    scores = rng.choice(np.array([0.3, 0.5, 0.7, 0.9], np.float32), n)
    classes = rng.integers(0, 3, n)
    keep = nms(boxes, scores, classes, 0.45)
    assert len(set(keep.tolist())) == len(keep)
    assert np.all(np.diff(scores[keep]) <= 0)
    iou = iou_xyxy(boxes[keep], boxes[keep])
    same = classes[keep][:, None] == classes[keep][None, :]
    np.fill_diagonal(same, False)
    assert not np.any(iou[same] > 0.45)
    # every dropped box overlaps a kept box of its class with a higher-or-equal score
    for d in set(range(n)) - set(keep.tolist()):
        k = keep[classes[keep] == classes[d]]
        assert np.any((iou_xyxy(boxes[d : d + 1], boxes[k])[0] > 0.45) & (scores[k] >= scores[d]))


def _sequential_nms(boxes, scores, classes, thr, kind, beta=0.6):
    """The textbook greedy walk, one box at a time (the reference for the blocked version)."""
    overlap = (lambda a, b: diou_xyxy(a, b, beta)) if kind == "diou" else iou_xyxy
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order.tolist():
        mine = [k for k in keep if classes[k] == classes[i]]
        if not mine or not np.any(overlap(boxes[mine], boxes[i : i + 1])[:, 0] > thr):
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


@pytest.mark.parametrize("kind", ["greedy", "diou"])
@pytest.mark.parametrize(("block", "tile"), [(256, 8192), (64, 5), (7, 1), (1, 3), (1000, 1000)])
def test_blocked_nms_matches_sequential_greedy(kind, block, tile):
    rng = np.random.default_rng(5)
    n = 300
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
    scores = rng.choice(np.linspace(0.1, 1, 40).astype(np.float32), n)  # many ties
    classes = rng.integers(0, 3, n)
    want = _sequential_nms(boxes, scores, classes, 0.45, kind)
    got = nms(boxes, scores, classes, 0.45, kind=kind, block=block, tile=tile)
    np.testing.assert_array_equal(got, want)
