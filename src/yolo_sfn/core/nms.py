"""Class-aware non-maximum suppression: darknet's greedy (``do_nms_sort``) and DIoU
(``diounms_sort`` with ``beta_nms``). Numpy only.

Semantics (as darknet and ``cv2.dnn.NMSBoxesBatched``): boxes of different classes never
suppress each other; within a class, walk boxes by score descending, keep a box and drop every
later box whose overlap with it is *greater* than the threshold. Equal scores are broken by
the input index (lower first), so results are deterministic.
"""

from __future__ import annotations

import numpy as np

from yolo_sfn.contract import NMS_KINDS
from yolo_sfn.core.boxes import diou_xyxy, iou_xyxy

BLOCK = 256  # boxes taken from the front of the score order per round
TILE = 8192  # later boxes tested per overlap matrix (BLOCK x TILE float32 = 8 MiB)


def _overlap(a_xyxy: np.ndarray, b_xyxy: np.ndarray, kind: str, beta: float) -> np.ndarray:
    return diou_xyxy(a_xyxy, b_xyxy, beta) if kind == "diou" else iou_xyxy(a_xyxy, b_xyxy)


def _nms_one_class(
    boxes_xyxy: np.ndarray, order: np.ndarray, iou_threshold: float, kind: str, beta: float,
    block: int, tile: int,
) -> list[np.ndarray]:
    """Greedy walk over ``order`` (indices into boxes, best first) -> kept indices, in order.

    Batched, and exactly the sequential greedy result: each round takes the best ``block``
    remaining boxes and walks them greedily with one upper-triangular overlap matrix (only
    rows that overlap a *later* box can suppress, so the Python loop runs once per such row),
    then drops every later box that a box kept in this round overlaps (``tile`` columns per
    matrix). Few kept boxes: the remaining list shrinks fast; many: the work is
    kept x remaining in large numpy operations. Memory stays bounded either way.
    """
    kept_parts: list[np.ndarray] = []
    rest = order
    while rest.size:
        head, rest = rest[:block], rest[block:]
        b = boxes_xyxy[head]
        over = np.triu(_overlap(b, b, kind, beta) > iou_threshold, k=1)
        suppressed = np.zeros(head.size, dtype=bool)
        for i in np.flatnonzero(over.any(axis=1)).tolist():
            if not suppressed[i]:
                suppressed |= over[i]
        kept = head[~suppressed]
        kept_parts.append(kept)
        if rest.size:
            kb = boxes_xyxy[kept]
            alive = np.empty(rest.size, dtype=bool)
            for s in range(0, rest.size, tile):
                hit = _overlap(kb, boxes_xyxy[rest[s : s + tile]], kind, beta) > iou_threshold
                np.logical_not(hit.any(axis=0), out=alive[s : s + tile])
            rest = rest[alive]
    return kept_parts


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float = 0.45,
    *,
    kind: str = "greedy",
    beta: float = 0.6,
    block: int = BLOCK,
    tile: int = TILE,
) -> np.ndarray:
    """Class-aware NMS.

    boxes_xyxy: (N, 4) x1, y1, x2, y2 (any consistent units); scores: (N,); class_ids: (N,) int.
    kind: "greedy" (IoU) or "diou" (darknet DIoU-NMS, exponent ``beta`` = ``beta_nms``).
    block, tile: work sizes (the result does not depend on them; memory is block x tile).
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
    cls_sorted = class_ids[order]
    # group by class, keeping the score order inside each class (stable sort on the class)
    by_cls = np.argsort(cls_sorted, kind="stable")
    grouped = order[by_cls]
    bounds = np.flatnonzero(np.diff(cls_sorted[by_cls])) + 1
    keep: list[np.ndarray] = []
    for part in np.split(grouped, bounds):
        keep.extend(_nms_one_class(boxes_xyxy, part, iou_threshold, kind, beta, block, tile))
    kept = np.concatenate(keep).astype(np.int64, copy=False)
    # back to global score order (stable on index for ties)
    kept.sort()
    return kept[np.argsort(-scores[kept], kind="stable")]
