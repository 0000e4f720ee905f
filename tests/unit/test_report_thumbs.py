"""Thumbnails from pixels a caller already holds (``thumb_of_pixels``) agree with the ones the
report makes from encoded files (``make_thumb``), and ``write_report(thumbs=...)`` uses them
instead of decoding: only the images it was not given a thumbnail for are decoded."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from yolo_sfn.core.image import decode_image, full_size_hw
from yolo_sfn.report import thumbs as thumbs_mod
from yolo_sfn.report import write_report
from yolo_sfn.report.thumbs import SIZE, Source, Thumb, make_thumb, thumb_of_pixels

IMAGES = Path(__file__).resolve().parents[2] / "testdata" / "images"


def _pixels(thumb: Thumb) -> np.ndarray:
    """The thumbnail's JPEG, decoded: (h, w, 3) uint8 BGR."""
    data = base64.b64decode(thumb.data_uri.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _jpeg(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def _synthetic(w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1),
                    (xx + yy) * 127 // max(1, w + h - 2)], axis=-1).astype(np.uint8)
    cv2.circle(img, (w // 3, h // 2), max(2, min(w, h) // 4), (20, 200, 90), -1)
    return img


def _exif_rotated() -> bytes:
    Image = pytest.importorskip("PIL.Image")
    base = Image.open(IMAGES / "dog.jpg")
    exif = base.getexif()
    exif[0x0112] = 6  # displayed turned by 90 degrees
    buf = io.BytesIO()
    base.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


CASES = {
    **{p.name: (lambda p=p: p.read_bytes()) for p in sorted(IMAGES.iterdir())},
    # odd sizes: libjpeg's 1/2, 1/4, 1/8 decodes round up, the thumbnail must not follow
    "1502x1001.jpg": lambda: _jpeg(_synthetic(1502, 1001)),  # 1/4: 376x251 -> 224x150, not 149
    "1001x1502.jpg": lambda: _jpeg(_synthetic(1001, 1502)),
    "small 150x90.jpg (never enlarged)": lambda: _jpeg(_synthetic(150, 90)),
    "exif-rotated.jpg": _exif_rotated,
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("drawn", [False, True])
def test_thumb_of_pixels_matches_make_thumb(name, drawn):
    data = CASES[name]()
    rgb = decode_image(data, name=name)
    before = rgb.copy()
    from_pixels = thumb_of_pixels(rgb, drawn=drawn)
    from_file = make_thumb(Source(data, drawn=drawn))
    assert (from_pixels.width, from_pixels.height, from_pixels.drawn) == (
        from_file.width, from_file.height, drawn)
    assert max(from_pixels.width, from_pixels.height) == min(SIZE, max(rgb.shape[:2]))
    assert from_pixels.data_uri.startswith("data:image/jpeg;base64,")
    # the same picture, colours the right way round (RGB in, a BGR-encoded JPEG out)
    a, b = _pixels(from_pixels).astype(int), _pixels(from_file).astype(int)
    assert a.shape == b.shape == (from_file.height, from_file.width, 3)
    assert np.abs(a - b).mean() < 6
    assert np.array_equal(rgb, before)  # the caller's pixels are untouched


def test_a_reduced_decode_with_its_full_size_gives_the_same_thumbnail_size():
    data = _jpeg(_synthetic(1001, 717))
    rgb = decode_image(data, name="big", max_pixels=500_000)  # decoded at 1/2 scale
    assert rgb.shape[:2] == (359, 501)  # whose own thumbnail would be 224x161
    thumb = thumb_of_pixels(rgb, drawn=False, full_hw=full_size_hw(data, rgb))
    ref = make_thumb(Source(data))
    assert (thumb.width, thumb.height) == (ref.width, ref.height) == (224, 160)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3), np.uint8),
                                 "not an array"])
def test_thumb_of_pixels_refuses_what_is_not_rgb(bad):
    assert thumb_of_pixels(bad, drawn=False) is None


# --- write_report(thumbs=...) ---------------------------------------------------------------
def _result(i: int, name: str) -> dict:
    return {"image_id": f"img{i}", "uri": f"s3://in/{name}", "status": "succeeded",
            "width": 768, "height": 576, "error": None,
            "detections": [{"label": "dog", "class_id": 16, "score": 0.9,
                            "box": [10, 10, 100, 100], "box_norm": [0.1, 0.1, 0.5, 0.6]}],
            "timings_ms": {"preprocess": 10.0, "infer": 30.0, "postprocess": 1.0, "store": 2.0}}


def _summary(results: list[dict]) -> dict:
    return {"batch_id": "b", "submitted": len(results), "unique": len(results),
            "succeeded": len(results), "failed": 0, "duplicates": [],
            "class_counts": {"dog": len(results)},
            "images": [{"image_id": r["image_id"], "uri": r["uri"], "status": r["status"],
                        "result_uri": None, "num_detections": 1, "error": None}
                       for r in results]}


def _card_thumb(html: str, image_id: str) -> str | None:
    card = re.search(rf'id="img-{image_id}"[^>]*>(.*?)<div class="name">', html, re.S).group(1)
    m = re.search(r'<image href="(data:image/jpeg;base64,[^"]+)"', card)
    return m.group(1) if m else None


@pytest.fixture()
def decoded(monkeypatch) -> list[bytes]:
    """The encoded sources the report decodes for thumbnails, in the order it asks."""
    seen: list[bytes] = []
    real = thumbs_mod.make_thumb

    def spy(source: Source, size: int = SIZE):
        seen.append(source.data)
        return real(source, size)

    monkeypatch.setattr(thumbs_mod, "make_thumb", spy)
    return seen


def test_write_report_uses_the_thumbs_it_is_given(tmp_path, decoded):
    names = ["dog.jpg", "kite.jpg", "girl.png"]
    results = [_result(i, n) for i, n in enumerate(names)]
    inputs = {r["image_id"]: IMAGES / n for r, n in zip(results, names, strict=True)}
    given = thumb_of_pixels(decode_image((IMAGES / "horses.jpg").read_bytes(), name="h"),
                            drawn=True)  # another picture: shows which one the page used
    html = write_report(tmp_path / "r.html", summary=_summary(results), results=results,
                        inputs=inputs, thumbs={"img1": given, "img2": None,
                                               "not in the batch": given}).read_text()
    assert _card_thumb(html, "img1") == given.data_uri
    # img1's input was never read for a thumbnail; the two others were, once each (None is
    # no thumbnail given), in whatever order the report's worker threads took them
    dog, girl = (IMAGES / "dog.jpg").read_bytes(), (IMAGES / "girl.png").read_bytes()
    assert sorted(decoded) == sorted([dog, girl])
    assert _card_thumb(html, "img0") == make_thumb(Source(dog)).data_uri
    assert _card_thumb(html, "img2") == make_thumb(Source(girl)).data_uri
    # a drawn thumbnail gets only the tags over it, a clean one the boxes too
    card1 = re.search(r'id="img-img1".*?<div class="name">', html, re.S).group(0)
    card0 = re.search(r'id="img-img0".*?<div class="name">', html, re.S).group(0)
    assert 'stroke-width="1.6"' not in card1 and "dog 0.90" in card1
    assert 'stroke-width="1.6"' in card0


def test_write_report_with_every_thumb_given_decodes_nothing(tmp_path, decoded):
    results = [_result(i, f"p{i}.jpg") for i in range(5)]
    given = {r["image_id"]: thumb_of_pixels(_synthetic(64 + i, 48), drawn=False)
             for i, r in enumerate(results)}
    missing = {r["image_id"]: tmp_path / "absent.jpg" for r in results}  # would be a placeholder
    html = write_report(tmp_path / "r.html", summary=_summary(results), results=results,
                        inputs=missing, thumbs=given).read_text()
    assert decoded == []
    assert [_card_thumb(html, i) for i in given] == [t.data_uri for t in given.values()]
    assert 'width="64" height="48"' in html  # the given thumbnail's own size
