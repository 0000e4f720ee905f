"""The whole local pipeline behind ``yolo-sfn detect``: preprocess -> Model.run -> postprocess.

The workflow stages call the same three functions with S3 in between, so both paths give the
same detections for the same image.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from yolo_sfn.contract import NMS_KINDS, RESIZE_CHOICES, resolve_resize
from yolo_sfn.core.postprocess import Detection, postprocess
from yolo_sfn.core.preprocess import to_network_input
from yolo_sfn.core.runtime import Model


class Detector:
    """Load a model once, detect on many (H, W, 3) uint8 RGB images. Thread-safe.

    resize: "stretch" | "letterbox" | "model" | None (None, "model" = the model's own:
    letterbox for a letter_box=1 cfg, ``meta.letter_box``, else stretch).
    nms_kind: "greedy" | "diou" | None (= the model's cfg choice, ``meta.nms_kind``).
    ``last_timings_ms`` holds {"preprocess", "infer", "postprocess"} of the latest call.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        score: float = 0.25,
        iou: float = 0.45,
        resize: str | None = None,
        nms_kind: str | None = None,
    ) -> None:
        if resize is not None and resize not in RESIZE_CHOICES:
            raise ValueError(f"resize {resize!r} not in {RESIZE_CHOICES}")
        if nms_kind is not None and nms_kind not in NMS_KINDS:
            raise ValueError(f"nms_kind {nms_kind!r} not in {NMS_KINDS}")
        if not 0.0 <= score <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"score and iou must be in [0, 1], got score={score} iou={iou}")
        self.model = Model.load(model_path, threads=threads)
        self.meta = self.model.meta
        self.score = score
        self.iou = iou
        self.resize = resolve_resize(resize, self.meta.letter_box)
        self.nms_kind = nms_kind
        self.last_timings_ms: dict[str, float] = {}

    def detect(
        self, rgb: np.ndarray, *, src_hw: tuple[int, int] | None = None
    ) -> list[Detection]:
        """(H', W', 3) uint8 RGB -> detections in original pixels, best first.

        src_hw: the original (H, W) when ``rgb`` was decoded at reduced scale
        (``yolo_sfn.core.image.full_size_hw``); None = ``rgb`` is the original.
        """
        t0 = time.perf_counter()
        batch, transform = to_network_input(rgb, self.meta.input_size, self.resize, src_hw=src_hw)
        t1 = time.perf_counter()
        heads = self.model.run(batch)
        t2 = time.perf_counter()
        dets = postprocess(
            heads, self.meta, transform, score=self.score, iou=self.iou, nms_kind=self.nms_kind
        )
        t3 = time.perf_counter()
        self.last_timings_ms = {
            "preprocess": (t1 - t0) * 1e3,
            "infer": (t2 - t1) * 1e3,
            "postprocess": (t3 - t2) * 1e3,
        }
        return dets
