"""Draw labelled detection boxes on an RGB image and write it to a file. cv2 only.

Colours are fixed per class id (a 20-colour high-contrast palette), line width and font scale
grow with the image size, and every label sits on a filled background in the box colour with
black or white text, whichever contrasts more. Boxes are drawn first, then labels from the
lowest score up, so where tags overlap the best detection's tag is on top.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from yolo_sfn.core.postprocess import Detection
from yolo_sfn.errors import InputFileError

# saturated, mutually distinct colours (RGB) that stay visible on light and dark scenes
_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (0, 190, 190),
    (240, 50, 230),
    (160, 200, 0),
    (255, 0, 127),
    (0, 128, 128),
    (120, 80, 255),
    (170, 110, 40),
    (230, 200, 0),
    (128, 0, 0),
    (0, 200, 120),
    (128, 128, 0),
    (255, 90, 0),
    (0, 0, 160),
    (90, 90, 90),
    (0, 150, 255),
)


def class_color_rgb(class_id: int) -> tuple[int, int, int]:
    """Stable, distinct RGB colour for a class id."""
    return _PALETTE[class_id % len(_PALETTE)]


def _draw_tag(out: np.ndarray, d: Detection, font_scale: float, font_thick: int, thick: int):
    """A filled ``label score`` tag above the box's top-left corner (inside if no room)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    w = out.shape[1]
    color = class_color_rgb(d.class_id)
    x1, y1 = round(d.box[0]), round(d.box[1])
    text = f"{d.label} {d.score:.2f}"
    (tw, th), base = cv2.getTextSize(text, font, font_scale, font_thick)
    pad = max(2, thick)
    ty = y1 - th - base - 2 * pad
    if ty < 0:
        ty = y1
    tx = min(max(x1, 0), max(w - tw - 2 * pad, 0))
    cv2.rectangle(out, (tx, ty), (tx + tw + 2 * pad, ty + th + base + 2 * pad), color, -1)
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
    cv2.putText(
        out, text, (tx + pad, ty + pad + th), font, font_scale, ink, font_thick, cv2.LINE_AA
    )


def draw_detections(
    rgb: np.ndarray, detections: Iterable[Detection], *, src_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> a new (H, W, 3) uint8 RGB with boxes and ``label score`` tags.

    src_hw: the (H0, W0) the boxes are in, when ``rgb`` is that picture decoded at reduced
    scale; None = ``rgb``'s own size.
    """
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    if src_hw is not None and tuple(src_hw) != (h, w):
        fx, fy = w / src_hw[1], h / src_hw[0]
        detections = [replace(d, box=(d.box[0] * fx, d.box[1] * fy, d.box[2] * fx,
                                      d.box[3] * fy)) for d in detections]
    thick = max(1, round(min(h, w) / 300))
    font_scale = max(0.4, min(h, w) / 1000)
    font_thick = max(1, thick // 2)
    dets = sorted(detections, key=lambda d: d.score)  # lowest first: best tag drawn last
    for d in dets:
        x1, y1, x2, y2 = (round(v) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), class_color_rgb(d.class_id), thick, cv2.LINE_8)
    for d in dets:
        _draw_tag(out, d, font_scale, font_thick, thick)
    return out


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB to ``path``; the format follows the extension (.jpg, .png...).
    Written to a hidden temporary file first and renamed, so ``path`` is whole or untouched."""
    p = Path(path)
    try:
        ok, buf = cv2.imencode(p.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise InputFileError(f"{p}: cannot encode an image with extension {p.suffix!r}")
    try:
        write_file(p, buf.tobytes())
    except OSError as e:
        raise InputFileError(f"{p}: cannot write ({e.strerror or e})") from None
    return p


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: into a new hidden file beside it (mode
    0666 less the umask, like any new file), renamed over ``path`` when complete."""
    tmp = path.with_name(f".yolo-sfn-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def annotate_file(path: str | Path, rgb: np.ndarray, detections: Iterable[Detection], *,
                  src_hw: tuple[int, int] | None = None) -> Path:
    """Draw ``detections`` (in ``src_hw`` pixels, see :func:`draw_detections`) on ``rgb`` and
    write the result to ``path``."""
    return write_image(path, draw_detections(rgb, detections, src_hw=src_hw))
