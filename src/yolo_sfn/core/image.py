"""Image bytes -> (H, W, 3) uint8 RGB, with a decompression-bomb guard.

Decoding is OpenCV's (``cv2.imdecode`` with ``IMREAD_COLOR_RGB``), which
    * applies the EXIF orientation tag (JPEG; ``IMREAD_IGNORE_ORIENTATION`` is not set),
    * converts CMYK/YCCK JPEG, grayscale, palette and 16-bit images to 8-bit RGB,
    * drops an alpha channel (no blending) -- what darknet (stb_image, 3 channels) and
      ``cv2.imread`` do, so detections match those tools on RGBA input,
    * takes the first frame of an animated GIF/WebP/APNG and the first page of a TIFF.

Before any pixel is decoded, the declared dimensions are read from the header (JPEG SOF,
PNG IHDR, GIF screen, WebP VP8/VP8L/VP8X, BMP, TIFF IFD0, PNM) and checked against
``max_pixels``, the limit on the decoded image; formats whose header we cannot read are
refused. A JPEG over the limit (a 48 MP phone photo: 8064 x 6048) is decoded at 1/2, 1/4 or
1/8 scale by libjpeg itself (``IMREAD_REDUCED_*``: the smallest reduction that fits the limit,
never below a YOLO input), up to ``JPEG_MAX_REDUCTION ** 2`` times the limit; a header past
that (50,000 x 50,000) is refused before decoding. Images within the limit decode at full size.
:func:`full_size_hw` gives the (H, W) of the picture itself, which boxes are reported in.
JPEG without an EOI marker after the scan data and PNG without IEND are reported as truncated
(libjpeg would otherwise return a partially grey image with only a warning). HEIC/HEIF and
AVIF (iPhone photos) and camera raw files (by extension, or a TIFF whose first image is a preview:
DNG, NEF, CR2, ARW) are named as such: OpenCV cannot decode them (of a raw file, at most its
thumbnail).

OpenCV's own log lines (``[ WARN:0@...]``, ``[ERROR:...]``) are silenced at import unless
``OPENCV_LOG_LEVEL`` is set: every decode failure is reported here, naming the input.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from yolo_sfn.contract import RAW_EXTENSIONS
from yolo_sfn.errors import ImageDecodeError, ImageTooLargeError, InputFileError

DEFAULT_MAX_PIXELS = 40_000_000
JPEG_MAX_REDUCTION = 4  # JPEG headers up to 16 x max_pixels decode at 1/2 or 1/4 scale
_JPEG_REDUCED = {1: 0, 2: 16, 4: 32, 8: 64}  # scale -> OpenCV's IMREAD_REDUCED_* bits
_IMREAD_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11
RAW_MESSAGE = ("camera raw file: OpenCV decodes no raw sensor data, at most a small preview "
               "(convert it to JPEG)")
# ISO BMFF brands of formats OpenCV does not decode (iPhone photos are HEIC)
_BMFF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"hevc": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF",
                b"avis": "AVIF"}

if "OPENCV_LOG_LEVEL" not in os.environ:  # our errors name the input; OpenCV's lines do not
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNM_HEADER = re.compile(rb"\AP[1-6](?:\s+|#[^\n]*\n)+?(\d+)(?:\s+|#[^\n]*\n)+?(\d+)")


class _Bad(Exception):
    """Internal: header problem, turned into ImageDecodeError with the input's name."""


def _jpeg_complete(data: bytes, scan_start: int) -> None:
    if data.find(b"\xff\xd9", scan_start) < 0:
        raise _Bad("truncated JPEG (no end-of-image marker)")


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    """-> (width, height, offset of the first scan's data) from the markers before SOS."""
    i, n = 2, len(data)
    size = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise _Bad(f"corrupt JPEG (bad marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            i += 2
            continue
        if marker == 0xD9:
            break
        seg_len = struct.unpack_from(">H", data, i + 2)[0]
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack_from(">HH", data, i + 5)
            size = (w, h)
        if marker == 0xDA:  # start of scan: entropy-coded data follows, no FFD9 inside it
            if size is None:
                raise _Bad("corrupt JPEG (scan before frame header)")
            return (*size, i + 2 + seg_len)
        i += 2 + seg_len
    raise _Bad("truncated JPEG (no image data)" if size else "truncated JPEG (no frame header)")


def _png_header(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _Bad("corrupt PNG (no IHDR)")
    return struct.unpack_from(">II", data, 16)


def _png_complete(data: bytes) -> None:
    if data.rfind(_PNG_IEND) < 0:
        raise _Bad("truncated PNG (no IEND chunk)")


def _gif_header(data: bytes) -> tuple[int, int]:
    """-> (width, height): the logical screen, grown to cover the first frame's descriptor."""
    if len(data) < 13:
        raise _Bad("truncated GIF header")
    sw, sh, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # skip the global colour table
    try:
        while data[pos] == 0x21:  # extension: label, then sub-blocks up to a 0 length
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        if data[pos] != 0x2C:
            raise _Bad("corrupt GIF (no image descriptor)")
        left, top, fw, fh = struct.unpack_from("<HHHH", data, pos + 1)
    except (IndexError, struct.error):
        raise _Bad("truncated GIF (no complete image descriptor)") from None
    return max(sw, left + fw), max(sh, top + fh)


def _webp_header(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _Bad("truncated WebP header")
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _Bad("corrupt WebP (bad VP8 start code)")
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    raise _Bad(f"unsupported WebP chunk {chunk!r}")


def _bmp_header(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _Bad("truncated BMP header")
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack_from("<HH", data, 18)
    w, h = struct.unpack_from("<ii", data, 18)
    return abs(w), abs(h)


_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_SUBFILE_TYPE, _TIFF_DNG_VERSION = 256, 257, 254, 50706


def _tiff_header(data: bytes) -> tuple[int, int]:
    """-> IFD0's (width, height). A camera raw file built on TIFF (DNG, NEF, CR2, ARW: IFD0 is
    a reduced-resolution preview, or DNGVersion is set, or the CR2 mark) is refused: OpenCV
    would decode only that preview, and detections on a thumbnail are wrong results."""
    e = "<" if data[:2] == b"II" else ">"
    try:
        off = struct.unpack_from(e + "I", data, 4)[0]
        count = struct.unpack_from(e + "H", data, off)[0]
        tags = {}
        for k in range(count):
            tag, typ = struct.unpack_from(e + "HH", data, off + 2 + 12 * k)
            if tag in (_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_SUBFILE_TYPE, _TIFF_DNG_VERSION):
                fmt = e + ("H" if typ == 3 else "I")
                tags[tag] = struct.unpack_from(fmt, data, off + 2 + 12 * k + 8)[0]
    except struct.error:
        raise _Bad("truncated TIFF header") from None
    if (_TIFF_DNG_VERSION in tags or tags.get(_TIFF_SUBFILE_TYPE, 0) & 1
            or data[8:10] == b"CR"):
        raise _Bad(RAW_MESSAGE)
    if _TIFF_WIDTH not in tags or _TIFF_LENGTH not in tags:
        raise _Bad("corrupt TIFF (no ImageWidth/ImageLength)")
    return tags[_TIFF_WIDTH], tags[_TIFF_LENGTH]


def _pnm_header(data: bytes) -> tuple[int, int]:
    m = _PNM_HEADER.match(data[:1024])
    if not m:
        raise _Bad("corrupt PNM header")
    return int(m.group(1)), int(m.group(2))


def image_format(head: bytes) -> str | None:
    """The format a file's first bytes (16 or more) declare: "JPEG", "PNG", ..., "HEIC" (one
    OpenCV cannot decode), or None for a file that is not an image by its header."""
    if head[4:8] == b"ftyp" and head[8:12] in _BMFF_BRANDS:
        return _BMFF_BRANDS[head[8:12]]
    for fmt, magic in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if re.match(rb"P[1-6]\s", head[:3]):
        return "PNM"
    return None


_MAGIC = (("JPEG", b"\xff\xd8\xff"), ("PNG", _PNG_SIG), ("GIF", b"GIF87a"), ("GIF", b"GIF89a"),
          ("BMP", b"BM"), ("TIFF", b"II*\x00"), ("TIFF", b"MM\x00*"))


def sniff_dimensions(data: bytes) -> tuple[str, int, int]:
    """Read (format, width, height) from the header only; raises _Bad on an unknown format."""
    fmt = image_format(data[:16])
    if fmt in ("HEIC", "HEIF", "AVIF"):
        raise _Bad(f"{fmt} image: OpenCV cannot decode {fmt} (convert it to JPEG or PNG)")
    if data[:3] == b"\xff\xd8\xff":
        return ("JPEG", *_jpeg_header(data)[:2])
    if data[:8] == _PNG_SIG:
        return ("PNG", *_png_header(data))
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ("GIF", *_gif_header(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WebP", *_webp_header(data))
    if data[:2] == b"BM":
        return ("BMP", *_bmp_header(data))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("TIFF", *_tiff_header(data))
    if re.match(rb"P[1-6]\s", data[:3]):
        return ("PNM", *_pnm_header(data))
    raise _Bad("not a supported image (JPEG, PNG, GIF, WebP, BMP, TIFF, PNM)")


def jpeg_scale(w: int, h: int, max_pixels: int) -> int | None:
    """The JPEG decode scale for a ``w`` x ``h`` header: 1 (full size) within ``max_pixels``,
    else the smallest of 2, 4 (``JPEG_MAX_REDUCTION``) whose result fits; None: too large."""
    scale = 1
    while -(-w // scale) * -(-h // scale) > max_pixels:
        scale *= 2
        if scale > JPEG_MAX_REDUCTION:
            return None
    return scale


def _check_size(fmt: str, w: int, h: int, name: str, max_pixels: int) -> int:
    """-> the decode scale (1 unless a JPEG over the limit); ImageTooLargeError if none fits."""
    if w * h <= max_pixels:
        return 1
    scale = jpeg_scale(w, h, max_pixels) if fmt == "JPEG" else None
    if scale is None:
        largest = (f" (a JPEG of up to {max_pixels * JPEG_MAX_REDUCTION ** 2:,} pixels would "
                   f"decode at reduced scale)" if fmt == "JPEG" else "")
        raise ImageTooLargeError(
            f"{name}: {fmt} image is {w}x{h} = {w * h:,} pixels, "
            f"over the limit of {max_pixels:,}{largest}"
        )
    return scale


def _imdecode(data: bytes, scale: int) -> np.ndarray | None:
    buf = np.frombuffer(data, dtype=np.uint8)
    reduced = _JPEG_REDUCED[scale]
    if _IMREAD_COLOR_RGB is not None:
        return cv2.imdecode(buf, reduced | _IMREAD_COLOR_RGB)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR | reduced)  # OpenCV < 4.11: BGR, then swap
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image(data: bytes, *, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB (EXIF orientation applied).

    name: how to refer to the input in errors (path or URI).
    max_pixels: the limit on the decoded image; a JPEG over it decodes at 1/2 or 1/4 scale
    (``jpeg_scale``), so H x W is at most ``max_pixels`` either way.
    Raises ImageDecodeError (empty, truncated, corrupt, unsupported) or ImageTooLargeError
    (declared size over the limit and no JPEG reduction fits; checked before decoding).
    """
    if not isinstance(data, bytes | bytearray):
        data = bytes(data)
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    try:
        if PurePosixPath(name).suffix.lower() in RAW_EXTENSIONS:
            raise _Bad(RAW_MESSAGE)
        fmt, w, h = sniff_dimensions(data)
        if w <= 0 or h <= 0:
            raise _Bad(f"{fmt} declares an empty image ({w}x{h})")
        scale = _check_size(fmt, w, h, name, max_pixels)
        if fmt == "JPEG":
            _jpeg_complete(data, _jpeg_header(data)[2])
        elif fmt == "PNG":
            _png_complete(data)
    except _Bad as e:
        raise ImageDecodeError(f"{name}: {e}") from None
    try:
        rgb = _imdecode(data, scale)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ImageDecodeError(f"{name}: {fmt} could not be decoded ({msg})") from None
    if rgb is None or rgb.size == 0:
        raise ImageDecodeError(f"{name}: {fmt} could not be decoded (corrupt or truncated data)")
    if rgb.shape[0] * rgb.shape[1] > max_pixels:  # header lied
        h, w = rgb.shape[:2]
        raise ImageTooLargeError(f"{name}: decoded {w}x{h} image is over {max_pixels:,} pixels")
    return rgb


def full_size_hw(data: bytes, rgb: np.ndarray) -> tuple[int, int]:
    """The full-resolution (H, W) of the image ``data`` declares, oriented like ``rgb``, its
    decode by :func:`decode_image`: ``rgb.shape[:2]`` unless that is a JPEG decoded at 1/k
    scale, whose shape is (ceil(H/k), ceil(W/k)), or (ceil(W/k), ceil(H/k)) when the EXIF
    orientation turned it by 90 degrees."""
    shape = (int(rgb.shape[0]), int(rgb.shape[1]))
    try:
        fmt, w, h = sniff_dimensions(data)
    except _Bad:
        return shape
    if fmt != "JPEG" or shape in ((h, w), (w, h)):
        return shape
    for k in _JPEG_REDUCED:
        if shape == (-(-h // k), -(-w // k)):
            return h, w
        if shape == (-(-w // k), -(-h // k)):
            return w, h
    return shape


def read_image_bytes(path: str | Path) -> bytes:
    """A local image file's bytes, not yet decoded.

    Raises InputFileError (missing, a directory, unreadable, empty).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, not an image file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputFileError(f"{p}: cannot read ({e.strerror or e})") from None
    if not data:
        raise InputFileError(f"{p}: empty file (0 bytes)")
    return data


def load_image_file(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode a local image -> (H, W, 3) uint8 RGB.

    Raises InputFileError (see :func:`read_image_bytes`) or ImageDecodeError /
    ImageTooLargeError (see :func:`decode_image`).
    """
    return decode_image(read_image_bytes(path), name=str(Path(path)), max_pixels=max_pixels)
