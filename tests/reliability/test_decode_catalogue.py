"""The bad-input catalogue against ``decode_image`` alone (fast; the workflow test runs it all).

Each decodable oddity must give the pixels a correct decoder gives (reference built
independently in make_bad_inputs.py); each broken file must raise the named error with a
one-line message naming the input; the decompression-bomb guard must fire before decoding.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from make_bad_inputs import PILLOW_CASES, Image, build_cases, png_declaring

image = pytest.importorskip("yolo_sfn.core.image")
from yolo_sfn import errors  # noqa: E402

CASES = [c for c in build_cases() if c.data is not None]
if Image is None:  # pragma: no cover
    CASES += [pytest.param(None, marks=pytest.mark.skip(f"Pillow missing: {k}")) for k in
              PILLOW_CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: getattr(c, "key", "skipped"))
def test_catalogue_decode(case) -> None:
    name = f"s3://input/{case.key}"
    if case.expect == "failed":
        err_cls = getattr(errors, case.error)
        with pytest.raises(err_cls) as info:
            image.decode_image(case.data, name=name)
        msg = str(info.value)
        assert name in msg and "\n" not in msg, msg
        return
    rgb = image.decode_image(case.data, name=name)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    ref = case.reference
    assert rgb.shape == ref.shape, f"{case.note}: got {rgb.shape}, expected {ref.shape}"
    diff = np.abs(rgb.astype(np.int16) - ref.astype(np.int16))
    if case.atol == 0:
        assert diff.max() == 0, f"{case.note}: max abs diff {diff.max()}"
    else:
        assert diff.mean() <= case.atol, f"{case.note}: mean abs diff {diff.mean():.2f}"


def test_exif_orientation_changes_shape() -> None:
    """The EXIF case is stored portrait (576 wide) and must come out landscape (768 wide)."""
    case = next(c for c in build_cases() if c.key == "odd/exif-rot6.jpg")
    import cv2

    raw = cv2.imdecode(np.frombuffer(case.data, np.uint8),
                       cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw.shape[:2] == (768, 576)
    assert image.decode_image(case.data, name="exif").shape[:2] == (576, 768)


@pytest.mark.parametrize(
    "data",
    [png_declaring(50_000, 50_000), png_declaring(65_535, 65_535, rows=1),
     png_declaring(40_000_001, 1, rows=0)],
    ids=["png-50000", "png-65535", "png-1-row-over-limit"],
)
def test_bomb_refused_before_decoding(monkeypatch, data: bytes) -> None:
    """ImageTooLargeError from the header alone: cv2.imdecode must never be reached."""

    def no_decode(*a, **k):
        raise AssertionError("cv2.imdecode called on a decompression bomb")

    monkeypatch.setattr(image.cv2, "imdecode", no_decode)
    with pytest.raises(errors.ImageTooLargeError, match="over the limit"):
        image.decode_image(data, name="s3://input/bomb.png")


def test_pixel_limit_boundary() -> None:
    case = next(c for c in build_cases() if c.key == "good/girl.png")
    h, w = case.reference.shape[:2]
    assert image.decode_image(case.data, name="d", max_pixels=h * w).shape == (h, w, 3)
    with pytest.raises(errors.ImageTooLargeError):
        image.decode_image(case.data, name="d", max_pixels=h * w - 1)
    # a JPEG over the limit decodes at half scale instead (issue 10: 48 MP phone photos)
    case = next(c for c in build_cases() if c.key == "good/dog.jpg")
    h, w = case.reference.shape[:2]
    assert image.decode_image(case.data, name="d", max_pixels=h * w - 1).shape == (
        h // 2, w // 2, 3)


def _gif_with_frame(screen: tuple[int, int], frame: tuple[int, int], pos=(0, 0)) -> bytes:
    """A 1-frame GIF whose image descriptor disagrees with its logical screen."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("P", (4, 4)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    struct.pack_into("<HH", data, 6, *screen)
    i = data.index(b"\x2c")
    struct.pack_into("<HHHH", data, i + 1, *pos, *frame)
    return bytes(data)


@pytest.mark.skipif(Image is None, reason="Pillow missing")
@pytest.mark.parametrize(
    ("screen", "frame", "pos"),
    [((16, 16), (60000, 60000), (0, 0)), ((16, 16), (4, 4), (65000, 65000)),
     ((60000, 60000), (4, 4), (0, 0))],
    ids=["frame-larger-than-screen", "frame-off-screen", "huge-screen"],
)
def test_gif_header_lies(screen, frame, pos) -> None:
    data = _gif_with_frame(screen, frame, pos)
    with pytest.raises((errors.ImageDecodeError, errors.ImageTooLargeError)):
        image.decode_image(data, name="s3://input/lie.gif")
