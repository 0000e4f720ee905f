"""Small JPEG thumbnails for the report's grid, made in a few threads, streamed in order.

A thumbnail is the input image scaled so its long side is ``size`` px (never enlarged),
JPEG-encoded and base64'd for a ``data:`` URI: about 8-12 KB each, so 1,000 images stay well
under 20 MB of HTML. JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
(``IMREAD_REDUCED_COLOR_*``), which is most of the speed; other formats go through
:func:`yolo_sfn.core.image.decode_image` (the workflow's own decoder). The declared size is
checked against the workflow's pixel limit before anything is decoded.

Boxes are not burnt into the thumbnail: the template draws them as SVG over it, in the class
colours of :func:`yolo_sfn.core.annotate.class_color_rgb`. A source that already has boxes
drawn (the local run's ``annotated/`` JPEG) says so with ``drawn=True``; then only the tags
are drawn over it (the burnt-in ones are too small to read in a thumbnail).

A caller that already holds an image's pixels (the local run decodes every input to draw its
annotated copy) makes the thumbnail with :func:`thumb_of_pixels` instead, and hands it to the
report, which then decodes nothing for that image. Both paths size a thumbnail from the
image's full-resolution (H, W) (:func:`thumb_size`), so their sizes agree to the pixel.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from yolo_sfn.core.image import DEFAULT_MAX_PIXELS, decode_image, full_size_hw, sniff_dimensions

SIZE = 224  # long side, px
QUALITY = 70
_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
            2: cv2.IMREAD_REDUCED_COLOR_2, 1: cv2.IMREAD_COLOR}


@dataclass(frozen=True)
class Source:
    """Encoded image bytes and whether detection boxes are already drawn on them."""

    data: bytes
    drawn: bool = False


@dataclass(frozen=True)
class Thumb:
    width: int
    height: int
    data_uri: str  # data:image/jpeg;base64,...
    drawn: bool  # boxes are in the pixels: draw only their tags


def _decode_bgr(data: bytes, size: int) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR at or above ``size`` on the long side where the format allows."""
    try:
        fmt, w, h = sniff_dimensions(data)
    except Exception:
        return None
    if w <= 0 or h <= 0 or w * h > DEFAULT_MAX_PIXELS:
        return None
    if fmt == "JPEG":
        factor = next(f for f in (8, 4, 2, 1) if f == 1 or max(w, h) / f >= size)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor])
        if bgr is not None and bgr.size:
            return bgr
    try:
        rgb = decode_image(data, name="thumbnail")
    except Exception:
        return None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def thumb_size(full_hw: tuple[int, int], size: int = SIZE) -> tuple[int, int]:
    """(W, H) of the thumbnail of an image whose full-resolution shape is ``full_hw`` = (H, W):
    its long side scaled to ``size``, never enlarged."""
    h, w = full_hw
    scale = min(1.0, size / max(h, w))
    if scale >= 1.0:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _thumb(bgr: np.ndarray, full_hw: tuple[int, int], size: int, drawn: bool, *,
           is_rgb: bool = False) -> Thumb | None:
    """(H, W, 3) uint8 pixels (BGR, or RGB when ``is_rgb``) at or above the thumbnail's size
    -> :class:`Thumb`."""
    w, h = thumb_size(full_hw, size)
    if max(bgr.shape[:2]) > 2 * max(w, h):  # INTER_AREA is slow at odd ratios: 2x by linear
        bgr = cv2.resize(bgr, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    if bgr.shape[:2] != (h, w):
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    if is_rgb:  # after the resize: converting the small image is cheaper
        bgr = cv2.cvtColor(bgr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        return None
    return Thumb(w, h, "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode(),
                 drawn)


def make_thumb(source: Source, size: int = SIZE) -> Thumb | None:
    """Encoded image -> :class:`Thumb`, or None when it cannot be decoded."""
    bgr = _decode_bgr(source.data, size)
    if bgr is None:
        return None
    return _thumb(bgr, full_size_hw(source.data, bgr), size, source.drawn)


def thumb_of_pixels(rgb: np.ndarray, *, drawn: bool, size: int = SIZE,
                    full_hw: tuple[int, int] | None = None) -> Thumb | None:
    """(H, W, 3) uint8 RGB -> :class:`Thumb`, as :func:`make_thumb` makes it from the same
    image encoded (same size and quality), without decoding anything. ``drawn``: the boxes
    are already in the pixels (an annotated copy). ``full_hw``: the image's full-resolution
    (H, W) when ``rgb`` is a reduced decode (:func:`yolo_sfn.core.image.full_size_hw`), so
    the size matches make_thumb's to the pixel; default ``rgb.shape[:2]``. None when ``rgb``
    is not such an array. Pure: ``rgb`` is not modified."""
    if (not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3
            or rgb.shape[2] != 3 or not rgb.size):
        return None
    hw = (int(rgb.shape[0]), int(rgb.shape[1])) if full_hw is None else full_hw
    return _thumb(np.ascontiguousarray(rgb), hw, size, drawn, is_rgb=True)


def ordered_map(fn: Callable, items: Iterable, *, workers: int = 4,
                window: int = 64) -> Iterator[tuple[object, object]]:
    """``(item, fn(item))`` for each item, in order, computed in ``workers`` threads with at
    most ``window`` results in flight or waiting, so memory stays bounded however many items
    there are (``Executor.map`` would submit them all at once)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque[tuple[object, Future]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= window:
                it, fut = pending.popleft()
                yield it, fut.result()
        while pending:
            it, fut = pending.popleft()
            yield it, fut.result()


def stream_thumbs(
    items: Iterable, source: Callable[[object], Source | None], *, size: int = SIZE,
    workers: int = 4,
) -> Iterator[tuple[object, Thumb | None]]:
    """``(item, thumb or None)`` for each item, in order (see :func:`ordered_map`). ``source``
    may do I/O (a file, an S3 object); it runs in the worker threads, and an exception in it
    means "no thumbnail" for that item, never a failed report."""

    def one(item) -> Thumb | None:
        try:
            src = source(item)
            return make_thumb(src, size) if src is not None and src.data else None
        except Exception:
            return None

    return ordered_map(one, items, workers=workers)
