"""Darknet detection heads -> candidate boxes. Numpy only, float32 throughout.

Input head ``i``: ``(1, H, W, A * R)`` NHWC, channel ``a * R + k``, ``R`` = 5 + C (``yolo``,
``region``) or 9 + C (``gaussian_yolo``; see :mod:`yolo_sfn.model.meta`). Reshaped without a
copy to rows ``(H * W * A, R)``, so the row
order inside a head is ``for y, for x, for anchor`` -- the order of OpenCV's darknet importer
(``region_layer.cpp``: ``index = (y * cols + x) * anchors + a``); heads are concatenated in meta
order, so rows line up 1:1 with ``cv2.dnn`` yolo outputs.

Formulas (darknet ``get_yolo_box``, ``s`` = ``scale_x_y``, W/H = grid, net = input size):
    plain:       x = (col + sigmoid(tx) * s - (s - 1) / 2) / W     w = exp(tw) * anchor_w / net_w
                 obj = sigmoid(to), cls = sigmoid(tc)
    new_coords:  x = (col + tx * s - (s - 1) / 2) / W              w = (2 * tw)^2 * anchor_w / net_w
                 obj = to, cls = tc   (the conv already applied the logistic)
    class_score = obj * cls    (as OpenCV's yolo output columns 5..)
    region (YOLOv2, darknet ``get_region_box``): the plain formulas with s = 1 (anchors stored
                 in input pixels), cls = softmax(tc) over the classes (raw tc without softmax)
    gaussian_yolo (darknet ``get_gaussian_yolo_box``): tx, ty, tw, th are the mean logits
                 (row columns 0, 2, 4, 6) in the plain formulas, obj = sigmoid(column 8),
                 cls = sigmoid(columns 9..); uncertainty u = sigmoid(columns 1, 3, 5, 7) of
                 x, y, w, h; class_score = obj * cls * (1 - mean(u))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import HeadMeta, ModelMeta


@dataclass(frozen=True)
class _HeadConsts:
    """Per-head constants, one value per row (H * W * A,), float32."""

    col: np.ndarray
    row: np.ndarray
    anchor_w_norm: np.ndarray  # anchor_w / net_w
    anchor_h_norm: np.ndarray  # anchor_h / net_h
    inv_w: np.float32  # 1 / grid W
    inv_h: np.float32
    scale: np.float32  # scale_x_y
    offset: np.float32  # (scale_x_y - 1) / 2
    new_coords: bool
    kind: str = "yolo"
    softmax: bool = False


@lru_cache(maxsize=64)
def _head_consts_cached(
    grid: tuple[int, int],
    anchors: tuple[tuple[float, float], ...],
    net_hw: tuple[int, int],
    scale_x_y: float,
    new_coords: bool,
    kind: str = "yolo",
    softmax: bool = False,
) -> _HeadConsts:
    gh, gw = grid
    na = len(anchors)
    ys, xs, _ = np.meshgrid(np.arange(gh), np.arange(gw), np.arange(na), indexing="ij")
    anc = np.asarray(anchors, dtype=np.float64)
    aw = np.broadcast_to(anc[:, 0] / net_hw[1], (gh, gw, na))
    ah = np.broadcast_to(anc[:, 1] / net_hw[0], (gh, gw, na))
    consts = [a.reshape(-1).astype(np.float32) for a in (xs, ys, aw, ah)]
    for a in consts:
        a.flags.writeable = False
    return _HeadConsts(
        *consts,
        np.float32(1.0 / gw),
        np.float32(1.0 / gh),
        np.float32(scale_x_y),
        np.float32((scale_x_y - 1.0) / 2.0),
        new_coords,
        kind,
        softmax,
    )


def _head_consts(head: HeadMeta, net_hw: tuple[int, int]) -> _HeadConsts:
    return _head_consts_cached(
        tuple(head.grid),
        tuple(tuple(map(float, a)) for a in head.anchors),
        tuple(net_hw),
        float(head.scale_x_y),
        bool(head.new_coords),
        head.kind,
        bool(head.softmax),
    )


def _sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 logistic, no overflow warnings: 0.5 + 0.5 * tanh(x / 2)."""
    out = np.multiply(x, np.float32(0.5), out=out)
    np.tanh(out, out=out)
    out *= np.float32(0.5)
    out += np.float32(0.5)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    """(n, C) float32 softmax along the classes (darknet's ``softmax``: exp(x - max) / sum)."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def head_rows(head: np.ndarray, meta: ModelMeta, i: int) -> np.ndarray:
    """Head ``i`` (1, H, W, A*R) -> (H*W*A, R) float32 rows (a view when possible)."""
    want = meta.head_shape(i)
    if tuple(head.shape) != want:
        raise ModelError(
            f"model {meta.name!r}: head {i} has shape {tuple(head.shape)}, expected {want}"
        )
    return np.asarray(head, dtype=np.float32).reshape(-1, want[3] // meta.heads[i].num_anchors)


_GAUSS_XY, _GAUSS_WH, _GAUSS_UC, _GAUSS_OBJ = [0, 2], [4, 6], [1, 3, 5, 7], 8


def _obj_column(consts: _HeadConsts) -> int:
    return _GAUSS_OBJ if consts.kind == "gaussian_yolo" else 4


def _logits(t: np.ndarray, consts: _HeadConsts):
    """(xy logits (n, 2), wh logits (n, 2), objectness logit (n,), class logits (n, C))."""
    if consts.kind == "gaussian_yolo":
        return t[:, _GAUSS_XY], t[:, _GAUSS_WH], t[:, _GAUSS_OBJ], t[:, _GAUSS_OBJ + 1:]
    return t[:, 0:2], t[:, 2:4], t[:, 4], t[:, 5:]


def decode_rows(
    t: np.ndarray, idx: np.ndarray | None, consts: _HeadConsts
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the raw rows ``t`` of one head: every row (``idx`` None) or the rows at
    indices ``idx`` (``t`` = those rows, already selected).

    Returns (boxes_cxcywh_norm (n, 4), objectness (n,), class_scores (n, C)), float32.
    """
    col = consts.col if idx is None else consts.col[idx]
    row = consts.row if idx is None else consts.row[idx]
    aw = consts.anchor_w_norm if idx is None else consts.anchor_w_norm[idx]
    ah = consts.anchor_h_norm if idx is None else consts.anchor_h_norm[idx]
    n = t.shape[0]
    boxes = np.empty((n, 4), dtype=np.float32)
    t_xy, t_wh, t_obj, t_cls = _logits(t, consts)
    if consts.new_coords:
        xy = t_xy * consts.scale
        wh = t_wh * np.float32(2.0)
        np.square(wh, out=wh)
        obj = np.array(t_obj, dtype=np.float32)
        cls = np.array(t_cls, dtype=np.float32)
    else:
        xy = _sigmoid(t_xy)
        xy *= consts.scale
        with np.errstate(over="ignore", under="ignore"):  # darknet gives inf too
            wh = np.exp(t_wh)
        obj = _sigmoid(t_obj)
        if consts.kind != "region":
            cls = _sigmoid(t_cls)
        else:
            cls = _softmax(t_cls) if consts.softmax else np.array(t_cls, dtype=np.float32)
    if consts.kind == "gaussian_yolo":
        cls *= np.float32(1.0) - _sigmoid(t[:, _GAUSS_UC]).mean(axis=1, keepdims=True)
    xy -= consts.offset
    np.add(xy[:, 0], col, out=boxes[:, 0])
    np.add(xy[:, 1], row, out=boxes[:, 1])
    boxes[:, 0] *= consts.inv_w
    boxes[:, 1] *= consts.inv_h
    np.multiply(wh[:, 0], aw, out=boxes[:, 2])
    np.multiply(wh[:, 1], ah, out=boxes[:, 3])
    cls *= obj[:, None]
    return boxes, obj, cls


def _check_head_count(heads: list[np.ndarray], meta: ModelMeta) -> None:
    if len(heads) != len(meta.heads):
        raise ModelError(
            f"model {meta.name!r}: {len(heads)} heads, metadata declares {len(meta.heads)}"
        )


def _objectness(raw: np.ndarray, consts: _HeadConsts) -> np.ndarray:
    """(n,) objectness of raw rows: the one definition :func:`decode_candidates` filters on
    and :func:`compact_heads` keeps rows by (their results match only because it is one)."""
    col = raw[:, _obj_column(consts)]
    return col if consts.new_coords else _sigmoid(col)


def uncertainty(logits: np.ndarray) -> np.ndarray:
    """Gaussian_yolo uncertainty logits (n, 4) -> uncertainty of x, y, w, h (sigmoid, 0..1)."""
    return _sigmoid(np.asarray(logits, dtype=np.float32))


def decode_heads(
    heads: list[np.ndarray], meta: ModelMeta
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All heads -> every candidate row.

    heads: list of (1, H, W, A*(5+C)) float32 in ``meta.heads`` order.
    Returns (boxes_cxcywh_norm (N, 4), objectness (N,), class_scores (N, C) = obj * cls_prob),
    float32, N = sum(H * W * A); box coordinates normalized to the network input (0..1).
    """
    _check_head_count(heads, meta)
    parts = [
        decode_rows(head_rows(h, meta, i), None, _head_consts(meta.heads[i], meta.input_size))
        for i, h in enumerate(heads)
    ]
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]


Heads = list[np.ndarray] | dict[str, np.ndarray]  # dense heads, or compact_heads' output


def _selected_rows(heads: Heads, meta: ModelMeta, thr: np.float32):
    """Per head: ``(row base, idx (n_i,), raw rows (n_i, R), consts)`` for the rows with
    objectness >= ``thr``, in row order; dense heads are filtered here, compact heads
    (:func:`compact_heads`) are already those rows (filtered again, for a higher ``thr``)."""
    compact = isinstance(heads, dict)
    if compact:
        check_compact(heads, meta)
    else:
        _check_head_count(heads, meta)
    base = 0
    for i, hm in enumerate(meta.heads):
        consts = _head_consts(hm, meta.input_size)
        if compact:
            idx = heads[f"rows_{i}"].astype(np.int64)
            raw = np.asarray(heads[f"head_{i}"], dtype=np.float32)
            total = _head_total(meta, i)
        else:
            idx, raw = None, head_rows(heads[i], meta, i)
            total = raw.shape[0]
        keep = np.flatnonzero(_objectness(raw, consts) >= thr)
        yield base, (keep if idx is None else idx[keep]), raw[keep], consts
        base += total


def decode_candidates_uc(
    heads: Heads, meta: ModelMeta, min_objectness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`decode_candidates` + the raw uncertainty logits ``(n, 4)`` of its rows (NaN for
    rows of non-gaussian heads; ``None`` when no head is gaussian_yolo): pass the rows you
    keep to :func:`uncertainty`."""
    thr = np.float32(min_objectness)
    gaussian = any(h.kind == "gaussian_yolo" for h in meta.heads)
    rows_out, boxes_out, scores_out, uc_out = [], [], [], []
    for base, idx, raw, consts in _selected_rows(heads, meta, thr):
        if idx.size:
            boxes, _, cls = decode_rows(raw, idx, consts)
            rows_out.append(idx + base)
            boxes_out.append(boxes)
            scores_out.append(cls)
            if gaussian:
                uc_out.append(raw[:, _GAUSS_UC] if consts.kind == "gaussian_yolo"
                              else np.full((idx.size, 4), np.nan, np.float32))
    if not rows_out:
        c = meta.num_classes
        return (np.zeros((0,), np.int64), np.zeros((0, 4), np.float32),
                np.zeros((0, c), np.float32), np.zeros((0, 4), np.float32) if gaussian else None)
    return (np.concatenate(rows_out), np.concatenate(boxes_out), np.concatenate(scores_out),
            np.concatenate(uc_out) if gaussian else None)


def decode_candidates(
    heads: Heads, meta: ModelMeta, min_objectness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`decode_heads` but only rows with objectness >= ``min_objectness``.

    ``heads``: the dense heads, or their :func:`compact_heads` (decoded directly, never
    expanded; compacted at a threshold <= ``min_objectness``, they give the same rows, boxes
    and scores bit for bit). Since class_score = obj * cls_prob <= obj, no row with a class
    score >= the threshold is lost. Returns (row_index (n,) into decode_heads' rows,
    boxes_cxcywh_norm (n, 4), class_scores (n, C)).
    """
    return decode_candidates_uc(heads, meta, min_objectness)[:3]


def compact_heads(
    heads: list[np.ndarray], meta: ModelMeta, min_objectness: float,
    *, max_fraction: float = 1.0,
) -> dict[str, np.ndarray] | None:
    """Only the rows :func:`decode_candidates` reads at this threshold, for the Infer ->
    Postprocess hand-over (a trained YOLOv4-416 at score 0.25: tens of its 10,647 rows, so
    KiB instead of 3.6 MB per image through S3).

    Returns ``{"rows_i": (n_i,) int32 row indices, "head_i": (n_i, R) float32 raw rows}``
    per head ``i`` (rows with objectness >= ``min_objectness``, in row order), plus
    ``"compact": ()`` as the format marker; :func:`expand_heads` inverts it. ``None`` (hand
    over the full heads) when more than ``max_fraction`` of all rows pass (random or untrained
    weights: little to save, and the copies cost time), or when the threshold is 0 in float32:
    a row dropped for a NaN objectness would come back as objectness 0 and pass.
    """
    _check_head_count(heads, meta)
    thr = np.float32(min_objectness)
    if not thr > 0:
        return None
    raws = [head_rows(h, meta, i) for i, h in enumerate(heads)]
    kept = [
        np.flatnonzero(_objectness(raw, _head_consts(meta.heads[i], meta.input_size)) >= thr)
        for i, raw in enumerate(raws)
    ]
    if sum(k.size for k in kept) > max_fraction * sum(r.shape[0] for r in raws):
        return None
    out: dict[str, np.ndarray] = {"compact": np.zeros((0,), np.int8)}
    for i, (raw, idx) in enumerate(zip(raws, kept, strict=True)):
        out[f"rows_{i}"] = idx.astype(np.int32)
        out[f"head_{i}"] = np.ascontiguousarray(raw[idx])
    return out


def is_compact(arrays: dict[str, np.ndarray]) -> bool:
    return "compact" in arrays


def _head_total(meta: ModelMeta, i: int) -> int:
    return int(np.prod(meta.head_shape(i))) // meta.heads[i].row_width(meta.num_classes)


def check_compact(arrays: dict[str, np.ndarray], meta: ModelMeta) -> None:
    """Raise ModelError unless ``arrays`` are :func:`compact_heads` of a model with ``meta``'s
    heads (one ``rows_i``/``head_i`` pair per head, row widths and indices in range)."""
    n = sum(1 for k in arrays if k.startswith("rows_"))
    if n != len(meta.heads):
        raise ModelError(f"model {meta.name!r}: {n} compact heads, metadata declares "
                         f"{len(meta.heads)}")
    for i, hm in enumerate(meta.heads):
        stride, total = hm.row_width(meta.num_classes), _head_total(meta, i)
        idx, vals = arrays.get(f"rows_{i}"), arrays.get(f"head_{i}")
        if (idx is None or vals is None or idx.ndim != 1 or idx.dtype.kind not in "iu"
                or vals.shape != (idx.size, stride)
                or (idx.size and not 0 <= idx.min() <= idx.max() < total)):
            raise ModelError(f"model {meta.name!r}: compact head {i} does not fit "
                             f"{meta.head_shape(i)}")


def expand_heads(arrays: dict[str, np.ndarray], meta: ModelMeta) -> list[np.ndarray]:
    """:func:`compact_heads` output -> full heads (1, H, W, A*(5+C)) float32 in meta order
    (for tools that want dense heads; the pipeline decodes compact heads directly).

    Kept rows go back to their places; every other row gets objectness 0 (logit -inf, or 0
    for ``new_coords`` heads) and zeros elsewhere, so :func:`decode_candidates` at the
    compaction's threshold (> 0) or above reads exactly the kept rows.
    """
    check_compact(arrays, meta)
    heads = []
    for i, hm in enumerate(meta.heads):
        raw = np.zeros((_head_total(meta, i), hm.row_width(meta.num_classes)), np.float32)
        if not hm.new_coords:
            raw[:, _GAUSS_OBJ if hm.kind == "gaussian_yolo" else 4] = -np.inf
        raw[arrays[f"rows_{i}"]] = arrays[f"head_{i}"]
        heads.append(raw.reshape(meta.head_shape(i)))
    return heads
