"""Heads -> :class:`Detection` list in original-image pixels. Numpy only.

Pipeline: decode (rows with objectness >= score only) -> candidates = every (row, class) pair
with ``obj * cls_prob >= score`` (darknet/OpenCV style: one box may yield several classes) ->
class-aware NMS (greedy IoU or darknet DIoU) on boxes in normalized original-image coordinates
(darknet's convention; IoU itself is invariant to per-axis scaling) -> map to original pixels,
clip to the image -> sort by score desc, class asc, box asc.

Two caps bound the work on pathological heads (a random-weights or badly trained model, or a
very low score threshold: ~550,000 candidates on YOLOv4-416, minutes of NMS). Below the caps
the result is exactly the uncapped one.

* ``MAX_CANDIDATES`` (30,000, as common detectors' pre-NMS top-k): when more (row, class)
  candidates pass the score threshold, only the best ``max_candidates`` by score go to NMS
  (ties: lower candidate index first, candidates in row-major (row, class) order).
* ``MAX_DETECTIONS`` (1,000; darknet has no cap, COCO evaluation counts 100 per image): at
  most this many detections are returned, the first ones of the final order.

Both are keyword arguments of :func:`postprocess` (``None`` = no cap); hitting one logs a
warning on the ``yolo_sfn.core.postprocess`` logger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from yolo_sfn.contract import NMS_KINDS
from yolo_sfn.core.boxes import clip_boxes_xyxy, xywh_to_xyxy
from yolo_sfn.core.decode import Heads, decode_candidates_uc, uncertainty
from yolo_sfn.core.nms import nms
from yolo_sfn.core.preprocess import Transform
from yolo_sfn.model.meta import ModelMeta

MAX_CANDIDATES = 30_000  # pre-NMS top-k by score
MAX_DETECTIONS = 1_000  # detections returned per image

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Detection:
    """One detection.

    box: (x1, y1, x2, y2) original-image pixels, clipped to the image.
    box_norm: the same box divided by (W, H, W, H) of the original image (0..1).
    uncertainty: Gaussian_yolo models only: the predicted uncertainty (0..1) of the box's
        x, y, w, h (darknet's ``uc``); ``None`` for every other head kind.
    """

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]
    box_norm: tuple[float, float, float, float]
    uncertainty: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict:
        d = {
            "label": self.label,
            "class_id": int(self.class_id),
            "score": round(float(self.score), 4),
            "box": [round(float(v), 2) for v in self.box],
            "box_norm": [round(float(v), 5) for v in self.box_norm],
        }
        if self.uncertainty is not None:
            d["uncertainty"] = [round(float(v), 4) for v in self.uncertainty]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Detection:
        return cls(
            label=str(d["label"]),
            class_id=int(d["class_id"]),
            score=float(d["score"]),
            box=tuple(float(v) for v in d["box"]),  # type: ignore[arg-type]
            box_norm=tuple(float(v) for v in d["box_norm"]),  # type: ignore[arg-type]
            uncertainty=(
                tuple(float(v) for v in d["uncertainty"])  # type: ignore[arg-type]
                if d.get("uncertainty") is not None
                else None
            ),
        )


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, ties by lower index, returned in index order.

    The same set as ``argsort(-scores, kind="stable")[:k]``, in O(n) (partition).
    """
    n = scores.size
    kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
    keep = scores > kth
    need = k - int(np.count_nonzero(keep))
    keep[np.flatnonzero(scores == kth)[:need]] = True
    return np.flatnonzero(keep)


def postprocess(
    heads: Heads,
    meta: ModelMeta,
    transform: Transform,
    *,
    score: float = 0.25,
    iou: float = 0.45,
    nms_kind: str | None = None,
    max_candidates: int | None = MAX_CANDIDATES,
    max_detections: int | None = MAX_DETECTIONS,
    stats: dict | None = None,
) -> list[Detection]:
    """heads: (1, H, W, A*(5+C)) float32 in meta order, or their ``core.decode.compact_heads``
    at a threshold <= ``score`` (decoded directly, same detections) -> detections, best first.

    nms_kind: "greedy" | "diou" | None (= ``meta.nms_kind``, darknet's cfg choice).
    max_candidates: pre-NMS cap, the best ``max_candidates`` (row, class) candidates by score
        (default ``MAX_CANDIDATES`` = 30,000; None = no cap).
    max_detections: at most this many detections, best first (default ``MAX_DETECTIONS`` =
        1,000; None = no cap). Results are unchanged whenever neither cap is reached.
    stats: when given, filled with ``candidates`` ((row, class) pairs at or above ``score``,
        before the cap), ``candidates_capped`` and ``detections_capped`` (bools).
    """
    kind = nms_kind or meta.nms_kind
    if kind not in NMS_KINDS:
        raise ValueError(f"nms kind {kind!r} not in {NMS_KINDS}")
    for name, cap in (("max_candidates", max_candidates), ("max_detections", max_detections)):
        if cap is not None and (isinstance(cap, bool) or int(cap) != cap or cap < 1):
            raise ValueError(f"{name} must be None or an integer >= 1, got {cap!r}")
    _, boxes_cxcywh, class_scores, uc_logits = decode_candidates_uc(heads, meta, score)
    # candidates: (K,) row into the decoded subset, (K,) class id
    cand_row, cand_cls = np.nonzero(class_scores >= np.float32(score))
    capped = max_candidates is not None and cand_row.size > max_candidates
    if stats is not None:
        stats.update(candidates=int(cand_row.size), candidates_capped=capped,
                     detections_capped=False)
    if cand_row.size == 0:
        return []
    cand_score = class_scores[cand_row, cand_cls]
    if capped:
        _log.warning(
            "%s: %d candidates at score %s, keeping the best %d for NMS",
            meta.name,
            cand_score.size,
            score,
            max_candidates,
        )
        top = top_k(cand_score, int(max_candidates))
        cand_row, cand_cls, cand_score = cand_row[top], cand_cls[top], cand_score[top]
    # (K, 4) xyxy original pixels, unclipped
    src_h, src_w = transform.src_hw
    boxes_src = transform.norm_to_src_xyxy(xywh_to_xyxy(boxes_cxcywh[cand_row]))
    inv_wh = np.array([1 / src_w, 1 / src_h, 1 / src_w, 1 / src_h], dtype=np.float32)
    boxes_unit = boxes_src * inv_wh  # (K, 4) xyxy normalized to the original image
    keep = nms(boxes_unit, cand_score, cand_cls, iou, kind=kind, beta=meta.beta_nms)
    boxes = clip_boxes_xyxy(boxes_src[keep], src_w, src_h)
    boxes_n = boxes * inv_wh
    scores = cand_score[keep]
    classes = cand_cls[keep]
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], classes, -scores))
    if max_detections is not None and order.size > max_detections:
        if stats is not None:
            stats["detections_capped"] = True
        _log.warning(
            "%s: %d detections, returning the best %d", meta.name, order.size, max_detections
        )
        order = order[: int(max_detections)]
    names = meta.names
    # python scalars once (per-element numpy indexing dominates with thousands of detections)
    cls_l = classes[order].tolist()
    score_l = scores[order].tolist()
    box_l = boxes[order].tolist()
    norm_l = boxes_n[order].tolist()
    uc_l = ([None] * len(cls_l) if uc_logits is None
            else [tuple(u) for u in uncertainty(uc_logits[cand_row[keep][order]]).tolist()])
    return [
        Detection(label=names[c], class_id=c, score=sc, box=tuple(b), box_norm=tuple(bn),
                  uncertainty=u)
        for c, sc, b, bn, u in zip(cls_l, score_l, box_l, norm_l, uc_l, strict=True)
    ]
