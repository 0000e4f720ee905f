"""Class-aware non-maximum suppression: darknet's greedy (``do_nms_sort``) and DIoU
(``diounms_sort`` with ``beta_nms``). Numpy only.

Semantics (as darknet and ``cv2.dnn.NMSBoxesBatched``): boxes of different classes never
suppress each other; within a class, walk boxes by score descending, keep a box and drop every
later box whose overlap with it is *greater* than the threshold. Equal scores are broken by
the input index (lower first), so results are deterministic.
"""

from __future__ import annotations

import numpy as np

from yolo_sfn.core.boxes import diou_xyxy, iou_xyxy

NMS_KINDS = ("greedy", "diou")


_MATRIX_MAX = 2048  # per-class candidates up to which the (K, K) overlap matrix is built


def _overlap(a_xyxy: np.ndarray, b_xyxy: np.ndarray, kind: str, beta: float) -> np.ndarray:
    return diou_xyxy(a_xyxy, b_xyxy, beta) if kind == "diou" else iou_xyxy(a_xyxy, b_xyxy)


def _nms_one_class(
    boxes_xyxy: np.ndarray, order: np.ndarray, iou_threshold: float, kind: str, beta: float
) -> list[int]:
    """Greedy walk over ``order`` (indices into boxes, best first) -> kept indices."""
    if order.size <= _MATRIX_MAX:
        # one (K, K) overlap matrix; only boxes that overlap a *later* box can suppress, so
        # the sequential scan visits just those rows
        b = boxes_xyxy[order]
        over = np.triu(_overlap(b, b, kind, beta) > iou_threshold, k=1)
        suppressed = np.zeros(order.size, dtype=bool)
        for i in np.flatnonzero(over.any(axis=1)).tolist():
            if not suppressed[i]:
                suppressed |= over[i]
        return order[~suppressed].tolist()
    keep: list[int] = []
    while order.size:  # large K: shrink the candidate list after each kept box
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        overlap = _overlap(boxes_xyxy[i : i + 1], boxes_xyxy[rest], kind, beta)[0]
        order = rest[overlap <= iou_threshold]
    return keep


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float = 0.45,
    *,
    kind: str = "greedy",
    beta: float = 0.6,
) -> np.ndarray:
    """Class-aware NMS.

    boxes_xyxy: (N, 4) x1, y1, x2, y2 (any consistent units); scores: (N,); class_ids: (N,) int.
    kind: "greedy" (IoU) or "diou" (darknet DIoU-NMS, exponent ``beta`` = ``beta_nms``).
    Returns kept indices (K,) int64, sorted by score descending, ties by index ascending.
    """
    if kind not in NMS_KINDS:
        raise ValueError(f"nms kind {kind!r} not in {NMS_KINDS}")
    boxes_xyxy = np.asarray(boxes_xyxy, dtype=np.float32)
    scores = np.asarray(scores)
    class_ids = np.asarray(class_ids)
    n = scores.shape[0]
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    # one global order: score desc, index asc (stable sort on -score)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    cls_sorted = class_ids[order]
    for c in np.unique(cls_sorted):
        keep.extend(_nms_one_class(boxes_xyxy, order[cls_sorted == c], iou_threshold, kind, beta))
    kept = np.asarray(keep, dtype=np.int64)
    # back to global score order (stable on index for ties)
    kept.sort()
    return kept[np.argsort(-scores[kept], kind="stable")]
