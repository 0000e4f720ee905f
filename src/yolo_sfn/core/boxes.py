"""Box format conversions and overlap measures. Numpy only, float32 in -> float32 out.

Formats (the name says which):
    xywh   centre x, centre y, width, height  (darknet / OpenCV yolo rows: ``cx, cy, w, h``)
    xyxy   left, top, right, bottom (x1, y1, x2, y2)
All functions take ``(N, 4)`` arrays (or ``(4,)`` for a single box where noted) and never
modify their input.
"""

from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 4) cx, cy, w, h -> (N, 4) x1, y1, x2, y2 (same dtype)."""
    b = np.asarray(boxes_xywh)
    half = b[..., 2:4] * 0.5
    return np.concatenate([b[..., 0:2] - half, b[..., 0:2] + half], axis=-1)


def xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) cx, cy, w, h (same dtype)."""
    b = np.asarray(boxes_xyxy)
    wh = b[..., 2:4] - b[..., 0:2]
    return np.concatenate([b[..., 0:2] + wh * 0.5, wh], axis=-1)


def clip_boxes_xyxy(boxes_xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N, 4) xyxy clipped to ``[0, width] x [0, height]``; returns a new array."""
    b = np.array(boxes_xyxy, copy=True)
    np.clip(b[..., 0::2], 0, width, out=b[..., 0::2])
    np.clip(b[..., 1::2], 0, height, out=b[..., 1::2])
    return b


def box_area_xyxy(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N,) area; inverted boxes count as 0."""
    b = np.asarray(boxes_xyxy)
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def iou_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU matrix: (N, 4) xyxy x (M, 4) xyxy -> (N, M). 0 where the union is empty.

    In-place arithmetic on (N, M) buffers (NMS builds 2048 x 2048 of these), with the same
    operations in the same order as the plain formula, so the values are identical.
    """
    a = np.asarray(a_xyxy)
    b = np.asarray(b_xyxy)
    dtype = np.result_type(a, b, np.float32)
    a = a.astype(dtype, copy=False)
    b = b.astype(dtype, copy=False)
    ax1, ay1, ax2, ay2 = (a[:, k : k + 1] for k in range(4))  # (N, 1)
    bx1, by1, bx2, by2 = (b[None, :, k] for k in range(4))  # (1, M)
    inter = np.minimum(ax2, bx2)
    inter -= np.maximum(ax1, bx1)
    np.maximum(inter, 0, out=inter)  # iw
    ih = np.minimum(ay2, by2)
    ih -= np.maximum(ay1, by1)
    np.maximum(ih, 0, out=ih)
    inter *= ih
    union = np.add(box_area_xyxy(a)[:, None], box_area_xyxy(b)[None, :], out=ih)
    union -= inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def diou_xyxy(a_xyxy: np.ndarray, b_xyxy: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """DIoU matrix as darknet's ``box_diou_nms``: ``iou - (d^2 / c^2) ** beta``.

    d = distance between box centres, c = diagonal of the smallest enclosing box.
    (N, 4) xyxy x (M, 4) xyxy -> (N, M). Where c == 0 the plain IoU is returned.
    """
    a = np.asarray(a_xyxy)
    b = np.asarray(b_xyxy)
    iou = iou_xyxy(a, b)
    a3, b3 = a[:, None, :], b[None, :, :]
    cw = np.maximum(a3[..., 2], b3[..., 2]) - np.minimum(a3[..., 0], b3[..., 0])
    ch = np.maximum(a3[..., 3], b3[..., 3]) - np.minimum(a3[..., 1], b3[..., 1])
    c2 = cw * cw + ch * ch
    dx = (a3[..., 0] + a3[..., 2] - b3[..., 0] - b3[..., 2]) * 0.5
    dy = (a3[..., 1] + a3[..., 3] - b3[..., 1] - b3[..., 3]) * 0.5
    d2 = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c2 > 0, d2 / c2, 0)
    penalty = ratio if beta == 1.0 else np.power(ratio, np.float32(beta))
    return np.where(c2 > 0, iou - penalty, iou).astype(iou.dtype, copy=False)
