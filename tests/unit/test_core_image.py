"""core.image: the decode catalogue, all generated here with cv2/numpy (no binaries, no Pillow).

The CMYK JPEG is the one input OpenCV cannot write: it is a 377-byte file made once with Pillow
(``Image.new("CMYK", (16, 12))``, left half red, right half blue, quality 95) and inlined.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from yolo_sfn.core.image import decode_image, full_size_hw, load_image_file, read_image_bytes
from yolo_sfn.errors import ImageDecodeError, ImageTooLargeError, InputFileError

CMYK_JPEG = base64.b64decode(
    "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwACAQEBAQECAQEBAgICAgIEAwICAgIFBAQDBAYFBgYGBQYGBgcJCAYHCQcG"
    "BggLCAkKCgoKCgYICwwLCgwJCgoK/8AAFAgADAAQBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAAB"
    "AgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNi"
    "coIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SV"
    "lpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4E"
    "QwBNAFkASwAAPwD9/K/n/r+f+v38r+AOiv7/ACiv7/KK/gDor+AOiv7/ACiv/9k="
)


def _enc(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def _rgb(h=24, w=40, seed=0) -> np.ndarray:
    """A smooth image (compresses predictably), RGB."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    return img.astype(np.uint8)


def _bgr(rgb):
    return np.ascontiguousarray(rgb[..., ::-1])


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _palette_png(index: np.ndarray, palette: np.ndarray) -> bytes:
    h, w = index.shape
    raw = b"".join(b"\x00" + index[r].astype(np.uint8).tobytes() for r in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + _png_chunk(b"PLTE", palette.astype(np.uint8).tobytes())
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment with one IFD0 entry: Orientation (0x0112, SHORT)."""
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + struct.pack("<H", 1)
        + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
        + struct.pack("<I", 0)
    )
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _mean_abs(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- formats that must decode ---------------------------------------------------------------
@pytest.mark.parametrize(
    "ext,params,atol",
    [
        (".png", (), 0),
        (".bmp", (), 0),
        (".tiff", (), 0),
        (".ppm", (), 0),
        (".jpg", (cv2.IMWRITE_JPEG_QUALITY, 98), 3),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), 0),  # lossless (VP8L)
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 90), 6),  # lossy (VP8)
    ],
)
def test_common_formats_decode_to_rgb(ext, params, atol):
    rgb = _rgb()
    out = decode_image(_enc(ext, _bgr(rgb), *params), name=f"x{ext}")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert _mean_abs(out, rgb) <= atol


def test_gray_png_and_jpeg():
    gray = _rgb()[..., 0]
    for data in (_enc(".png", gray), _enc(".jpg", gray, cv2.IMWRITE_JPEG_QUALITY, 98)):
        out = decode_image(data, name="g")
        assert out.shape == (*gray.shape, 3)
        assert _mean_abs(out, np.repeat(gray[..., None], 3, 2)) <= 2


def test_16bit_png_scaled_to_8bit():
    rgb = _rgb()
    u16 = _bgr(rgb).astype(np.uint16) * 257
    out = decode_image(_enc(".png", u16), name="u16.png")
    np.testing.assert_array_equal(out, rgb)


def test_rgba_png_drops_alpha():
    rgb = _rgb()
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: colour is kept, not blended
    out = decode_image(_enc(".png", np.dstack([_bgr(rgb), alpha])), name="a.png")
    np.testing.assert_array_equal(out, rgb)


def test_palette_png():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    index = np.arange(12 * 10).reshape(12, 10) % 3
    out = decode_image(_palette_png(index, palette), name="p.png")
    np.testing.assert_array_equal(out, palette[index])


@pytest.mark.parametrize("ext", [".gif", ".webp", ".png"])
def test_animation_first_frame(ext):
    first = np.zeros((20, 30, 3), np.uint8)
    first[:] = (0, 0, 250)  # BGR red
    anim = cv2.Animation()
    anim.frames = [first, np.zeros_like(first)]
    anim.durations = [100, 100]
    ok, buf = cv2.imencodeanimation(ext, anim)
    assert ok
    out = decode_image(buf.tobytes(), name=f"anim{ext}")
    assert out.shape == (20, 30, 3)
    assert out[..., 0].min() > 200 and out[..., 1:].max() < 20


def test_cmyk_jpeg():
    out = decode_image(CMYK_JPEG, name="cmyk.jpg")
    assert out.shape == (12, 16, 3)
    assert _mean_abs(out[:, :8], np.array([255, 0, 0], np.uint8)) < 8  # red
    assert _mean_abs(out[:, 8:], np.array([0, 0, 255], np.uint8)) < 8  # blue


@pytest.mark.parametrize(
    "orientation,rotate",
    [
        (1, None),
        (3, cv2.ROTATE_180),
        (6, cv2.ROTATE_90_CLOCKWISE),
        (8, cv2.ROTATE_90_COUNTERCLOCKWISE),
    ],
)
def test_exif_orientation_is_applied(orientation, rotate):
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:8, :8] = (255, 255, 255)  # a white top-left corner makes every rotation distinct
    jpeg = _with_exif_orientation(
        _enc(".jpg", _bgr(rgb), cv2.IMWRITE_JPEG_QUALITY, 100), orientation
    )
    out = decode_image(jpeg, name="exif.jpg")
    want = rgb if rotate is None else cv2.rotate(rgb, rotate)
    assert out.shape == want.shape
    assert _mean_abs(out, want) < 3


# --- inputs that must fail, in one line naming the input ----------------------------------------
def _fails(data: bytes, err=ImageDecodeError, *needles: str, max_pixels=40_000_000) -> str:
    with pytest.raises(err) as e:
        decode_image(data, name="in/put.jpg", max_pixels=max_pixels)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("in/put.jpg: ")
    for n in needles:
        assert n in msg
    return msg


def test_empty():
    _fails(b"", ImageDecodeError, "empty")


def test_text_renamed_jpg():
    _fails(b"This is a text file, not a JPEG\n" * 10, ImageDecodeError, "not a supported image")


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.9, 0.999])
def test_truncated_jpeg(frac):
    data = _enc(".jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    _fails(data[: int(len(data) * frac)], ImageDecodeError, "truncated JPEG")


def test_jpeg_with_trailing_bytes_still_decodes():
    data = _enc(".jpg", _bgr(_rgb())) + b"\x00" * 100
    assert decode_image(data, name="t.jpg").shape == (24, 40, 3)


@pytest.mark.parametrize("cut", [30, 200, -13, -1])
def test_truncated_png(cut):
    data = _enc(".png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    _fails(data[:cut], ImageDecodeError, "PNG")


def test_garbage_after_valid_magic():
    _fails(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ImageDecodeError)
    _fails(b"GIF89a" + b"\x10\x00\x10\x00" + b"\x00" * 20, ImageDecodeError, "GIF")
    _fails(b"BM" + b"\x00" * 60, ImageDecodeError)


# --- decompression-bomb guard: header only, nothing decoded ----------------------------------
def _png_header_only(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def _jpeg_declaring(w: int, h: int) -> bytes:
    data = bytearray(_enc(".jpg", _bgr(_rgb())))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


BOMBS = {
    "png-50k": _png_header_only(50_000, 50_000),
    "jpeg-50k": _jpeg_declaring(50_000, 50_000),
    "gif-64k": b"GIF89a"
    + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    + b"\x2c"
    + struct.pack("<HHHHB", 0, 0, 1, 1, 0),
    "webp-vp8x": b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00"
    + (49_999).to_bytes(3, "little") * 2,
    "bmp": b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 50_000, -50_000) + b"\x00" * 30,
    "tiff": b"II*\x00"
    + struct.pack("<IH", 8, 2)
    + struct.pack("<HHII", 256, 4, 1, 50_000)
    + struct.pack("<HHII", 257, 4, 1, 50_000)
    + b"\x00" * 4,
    "pnm": b"P6\n# comment\n50000 50000\n255\n",
}


def _gif_with_big_first_frame() -> bytes:
    """A 4x4 logical screen whose first image descriptor declares 50000x50000."""
    anim = cv2.Animation()
    anim.frames = [np.zeros((4, 4, 3), np.uint8)]
    anim.durations = [100]
    ok, buf = cv2.imencodeanimation(".gif", anim)
    assert ok
    data = bytearray(buf.tobytes())
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while data[pos] == 0x21:
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C
    data[pos + 5 : pos + 9] = struct.pack("<HH", 50_000, 50_000)
    return bytes(data)


BOMBS["gif-frame"] = _gif_with_big_first_frame()


@pytest.mark.parametrize("name", list(BOMBS))
def test_pixel_bomb_refused_from_header(name):
    _fails(BOMBS[name], ImageTooLargeError, "50000x50000" if name != "gif-64k" else "65535x65535")


def test_max_pixels_parameter():
    data = _enc(".png", _bgr(_rgb(100, 100)))
    assert decode_image(data, name="x", max_pixels=10_000).shape == (100, 100, 3)
    _fails(data, ImageTooLargeError, "10,000", "9,999", max_pixels=9_999)


def test_accepts_bytearray_and_memoryview():
    data = _enc(".png", _bgr(_rgb()))
    assert decode_image(bytearray(data), name="x").shape == (24, 40, 3)
    assert decode_image(memoryview(data), name="x").shape == (24, 40, 3)


# --- files --------------------------------------------------------------------------------
def test_load_image_file(tmp_path):
    p = tmp_path / "ok.png"
    p.write_bytes(_enc(".png", _bgr(_rgb())))
    np.testing.assert_array_equal(load_image_file(p), _rgb())


def test_load_image_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file") as e:
        load_image_file(tmp_path / "missing.jpg")
    assert "missing.jpg" in str(e.value)
    with pytest.raises(InputFileError, match="directory"):
        load_image_file(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        load_image_file(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageDecodeError) as e:
        load_image_file(tmp_path / "text.jpg")
    assert str(tmp_path / "text.jpg") in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_load_image_file_unreadable(tmp_path):
    p = tmp_path / "secret.png"
    p.write_bytes(_enc(".png", _bgr(_rgb())))
    p.chmod(0)
    with pytest.raises(InputFileError, match="cannot read"):
        load_image_file(p)


# --- a JPEG over the pixel limit (a 48 MP phone photo) decodes at reduced scale -----------------
def test_jpeg_over_the_limit_decodes_at_half_or_quarter_scale():
    rgb = np.random.default_rng(1).integers(0, 256, (96, 160, 3), np.uint8)
    jpeg = _enc(".jpg", _bgr(rgb), cv2.IMWRITE_JPEG_QUALITY, 95)
    full = decode_image(jpeg, name="p.jpg")  # within the limit: full size, as before
    assert full.shape == (96, 160, 3)
    half = decode_image(jpeg, name="p.jpg", max_pixels=96 * 160 - 1)
    want = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)[..., ::-1]
    assert half.shape == (48, 80, 3) and np.array_equal(half, want)
    assert decode_image(jpeg, name="p.jpg", max_pixels=48 * 80 - 1).shape == (24, 40, 3)
    # past 1/4 scale: refused from the header, saying what would have fitted
    _fails(jpeg, ImageTooLargeError, "160x96", "decode at reduced scale", max_pixels=24 * 40 - 1)
    # other formats have no reduced decode: the limit stays
    _fails(_enc(".png", _bgr(rgb)), ImageTooLargeError, "PNG", max_pixels=96 * 160 - 1)


def test_reduced_jpeg_keeps_exif_orientation():
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:16, :16] = (255, 255, 255)
    jpeg = _with_exif_orientation(_enc(".jpg", _bgr(rgb), cv2.IMWRITE_JPEG_QUALITY, 100), 6)
    out = decode_image(jpeg, name="exif.jpg", max_pixels=32 * 64 - 1)
    want = cv2.resize(cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE), (16, 32),
                      interpolation=cv2.INTER_AREA)
    assert out.shape == (32, 16, 3) and _mean_abs(out, want) < 20


@pytest.mark.parametrize("orientation,full_hw", [(1, (97, 161)), (6, (161, 97)), (8, (161, 97)),
                                                 (3, (97, 161))])
@pytest.mark.parametrize("max_pixels", [40_000_000, 97 * 161 - 1, 49 * 81 - 1])
def test_full_size_hw_is_the_declared_size_oriented_like_the_decode(orientation, full_hw,
                                                                     max_pixels):
    # odd sides: libjpeg's 1/k decode is ceil(W/k) x ceil(H/k) (81 x 49, then 41 x 25)
    rgb = np.random.default_rng(2).integers(0, 256, (97, 161, 3), np.uint8)
    jpeg = _with_exif_orientation(_enc(".jpg", _bgr(rgb), cv2.IMWRITE_JPEG_QUALITY, 90),
                                  orientation)
    out = decode_image(jpeg, name="p.jpg", max_pixels=max_pixels)
    assert out.shape[0] * out.shape[1] <= max_pixels
    assert (out.shape[0] > out.shape[1]) == (full_hw[0] > full_hw[1])
    assert full_size_hw(jpeg, out) == full_hw


def test_full_size_hw_of_other_formats_is_the_decoded_shape():
    rgb = _rgb(24, 40)
    for data in (_enc(".png", _bgr(rgb)), _enc(".bmp", _bgr(rgb)), b"not an image"):
        assert full_size_hw(data, rgb) == (24, 40)


def test_read_image_bytes(tmp_path):
    data = _enc(".png", _bgr(_rgb()))
    (tmp_path / "a.png").write_bytes(data)
    assert read_image_bytes(tmp_path / "a.png") == data
    with pytest.raises(InputFileError, match="no such file"):
        read_image_bytes(tmp_path / "missing.png")


def test_a_50k_jpeg_header_is_still_refused_before_decoding():
    _fails(_jpeg_declaring(50_000, 50_000), ImageTooLargeError, "50000x50000")


@pytest.mark.parametrize("brand", [b"heic", b"mif1", b"avif"])
def test_heic_and_avif_are_named(brand):
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(64)
    _fails(data, ImageDecodeError, "OpenCV cannot decode", "convert it to JPEG")


def test_opencv_log_lines_do_not_leak(tmp_path):
    import subprocess
    import sys

    code = ("from yolo_sfn.core.image import decode_image\n"
            "for data in (b'\\x89PNG\\r\\n\\x1a\\n' + bytes(100), b'GIF89a' + bytes(100)):\n"
            "    try: decode_image(data, name='x')\n"
            "    except Exception as e: print(type(e).__name__)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.stdout.split() == ["ImageDecodeError", "ImageDecodeError"]
    assert "[ WARN" not in proc.stderr and "[ERROR" not in proc.stderr, proc.stderr


def _tiff_ifd0(*entries: tuple[int, int, int]) -> bytes:
    """A little-endian TIFF header whose IFD0 holds (tag, type, value) entries."""
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, typ, 1, value) for tag, typ, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (_tiff_ifd0((254, 4, 1), (256, 3, 160), (257, 3, 120)), "in/put.jpg"),  # NEF, ARW, DNG
        (_tiff_ifd0((256, 3, 160), (257, 3, 120), (50706, 1, 0x01040000)), "in/put.jpg"),
        (_tiff_ifd0((256, 3, 160), (257, 3, 120)), "in/put.jpg.NEF"),
        (b"FUJIFILMCCD-RAW " + bytes(64), "in/put.jpg.raf"),
    ],
    ids=["preview-ifd0", "dng-version", "nef-name", "raf-name"],
)
def test_camera_raw_files_are_named_not_decoded_as_their_thumbnail(data, name):
    with pytest.raises(ImageDecodeError, match="camera raw file"):
        decode_image(data, name=name)
