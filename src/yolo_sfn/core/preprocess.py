"""RGB image -> network input tensor, and the :class:`Transform` that maps boxes back.

Modes:
    stretch    cv2.resize to (h, w), INTER_LINEAR on uint8 -- the numerics of
               ``cv2.dnn.blobFromImage(img, 1/255, (w, h), swapRB=...)`` before the /255
               (which :meth:`yolo_sfn.core.runtime.Model.run` does). darknet's default.
    letterbox  keep the aspect ratio: resize by ``min(w/W, h/H)`` (INTER_LINEAR), centre it,
               pad with 128 (darknet ``letter_box=1``).

Coordinates: boxes are continuous pixel coordinates (edges, not pixel centres), so
``x_net = x_src * scale_x + pad_x`` and ``x_src = (x_net - pad_x) / scale_x``.

cv2 is imported inside :func:`to_network_input` only: :class:`Transform` (all that
Postprocess needs) is numpy-only, so the Postprocess Lambda carries no OpenCV layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolo_sfn.contract import RESIZE_MODES

LETTERBOX_FILL = 128


@dataclass(frozen=True)
class Transform:
    """How an original image became the network input.

    mode: "stretch" | "letterbox"; src_hw: original (H, W), the size boxes are reported in
    (the picture's full size, also when it was decoded at reduced scale); dst_hw: network
    input (h, w); scale_xy: (sx, sy) resized / original size per axis; pad_xy: (px, py)
    left/top padding in network pixels.
    """

    mode: str
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    scale_xy: tuple[float, float]
    pad_xy: tuple[int, int]

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "src_hw": list(self.src_hw),
            "dst_hw": list(self.dst_hw),
            "scale_xy": list(self.scale_xy),
            "pad_xy": list(self.pad_xy),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Transform:
        return cls(
            mode=str(d["mode"]),
            src_hw=(int(d["src_hw"][0]), int(d["src_hw"][1])),
            dst_hw=(int(d["dst_hw"][0]), int(d["dst_hw"][1])),
            scale_xy=(float(d["scale_xy"][0]), float(d["scale_xy"][1])),
            pad_xy=(int(d["pad_xy"][0]), int(d["pad_xy"][1])),
        )

    def norm_to_src_xyxy(self, boxes_xyxy_norm: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy normalized to the network input (0..1) -> original-image pixels, float32.

        Not clipped.
        """
        h, w = self.dst_hw
        sx, sy = self.scale_xy
        px, py = self.pad_xy
        # x_src = (x_norm * w - px) / sx, as one multiply-add per axis
        mul = np.array([w / sx, h / sy, w / sx, h / sy], dtype=np.float32)
        add = np.array([-px / sx, -py / sy, -px / sx, -py / sy], dtype=np.float32)
        out = np.multiply(boxes_xyxy_norm, mul, dtype=np.float32)
        out += add
        return out

    def src_to_norm_xyxy(self, boxes_xyxy_src: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy original-image pixels -> normalized network input coordinates."""
        h, w = self.dst_hw
        sx, sy = self.scale_xy
        px, py = self.pad_xy
        mul = np.array([sx / w, sy / h, sx / w, sy / h], dtype=np.float32)
        add = np.array([px / w, py / h, px / w, py / h], dtype=np.float32)
        out = np.multiply(boxes_xyxy_src, mul, dtype=np.float32)
        out += add
        return out


def letterbox_geometry(
    src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> tuple[int, int, int, int]:
    """-> (new_w, new_h, pad_x, pad_y) for a centred aspect-preserving resize."""
    sh, sw = src_hw
    dh, dw = dst_hw
    r = min(dw / sw, dh / sh)
    new_w = min(dw, max(1, round(sw * r)))
    new_h = min(dh, max(1, round(sh * r)))
    return new_w, new_h, (dw - new_w) // 2, (dh - new_h) // 2


def to_network_input(
    rgb: np.ndarray,
    size_hw: tuple[int, int],
    mode: str = "stretch",
    *,
    src_hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray, Transform]:
    """(H', W', 3) uint8 RGB -> ((1, h, w, 3) uint8 RGB, Transform). No normalization here.

    size_hw: the network input (h, w).
    src_hw: the original (H, W) that ``rgb`` shows, when it was decoded at reduced scale
        (``yolo_sfn.core.image.full_size_hw``); None = ``rgb``'s own (H', W'). The Transform's
        ``src_hw`` and ``scale_xy`` refer to it, so boxes map back to (and are clipped to) the
        original's pixels.
    """
    import cv2  # here, not at module level: Transform must import without OpenCV

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} not in {RESIZE_MODES}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    sh, sw = int(rgb.shape[0]), int(rgb.shape[1])
    oh, ow = (sh, sw) if src_hw is None else (int(src_hw[0]), int(src_hw[1]))
    if oh < 1 or ow < 1:
        raise ValueError(f"src_hw must be positive, got {src_hw}")
    dh, dw = int(size_hw[0]), int(size_hw[1])
    batch = np.empty((1, dh, dw, 3), dtype=np.uint8)
    if mode == "stretch":
        if (sh, sw) == (dh, dw):
            batch[0] = rgb
        else:
            cv2.resize(rgb, (dw, dh), dst=batch[0], interpolation=cv2.INTER_LINEAR)
        return batch, Transform(mode, (oh, ow), (dh, dw), (dw / ow, dh / oh), (0, 0))
    new_w, new_h, px, py = letterbox_geometry((sh, sw), (dh, dw))
    batch.fill(LETTERBOX_FILL)
    inner = batch[0, py : py + new_h, px : px + new_w]
    if (new_h, new_w) == (sh, sw):
        inner[...] = rgb
    else:
        inner[...] = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return batch, Transform(mode, (oh, ow), (dh, dw), (new_w / ow, new_h / oh), (px, py))
