"""The bad-input catalogue: every odd image the workflow must survive, generated on demand.

Nothing here is committed as a binary: each case is built from ``testdata/images`` at test
time (Pillow for the formats OpenCV cannot write: CMYK JPEG, palette PNG, animated GIF,
EXIF orientation). ``python tests/reliability/make_bad_inputs.py OUTDIR`` writes the corpus
plus ``cases.json`` (what each file is and what the workflow must do with it) for manual runs::

    yolo-sfn run OUTDIR --out out/bad

Each :class:`Case` says what the whole workflow must report for it: ``succeeded`` (the
decoder must cope: CMYK, 16-bit, palette, GIF, WebP, EXIF ...) or ``failed`` at ``stage``
with ``error`` (an error class name from :mod:`yolo_sfn.errors`).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "testdata" / "images"

try:  # Pillow writes what OpenCV cannot (CMYK JPEG, palette PNG, animated GIF, EXIF)
    from PIL import Image
except ImportError:  # pragma: no cover - reported as skipped cases
    Image = None


@dataclass(frozen=True)
class Case:
    """One catalogue entry.

    key: object key (relative, may contain spaces/unicode); data: the bytes, or None for
    "never uploaded" (missing key). expect: succeeded|failed; stage/error: where and how a
    failure must be reported. reference: for decodable oddities, the RGB (H, W, 3) uint8
    image a correct decoder returns (None: no pixel expectation); atol: allowed mean absolute
    difference for lossy re-encodings (0: pixel-exact).
    """

    key: str
    data: bytes | None
    expect: str
    note: str
    stage: str | None = None
    error: str | None = None
    reference: np.ndarray | None = field(default=None, repr=False, compare=False)
    atol: float = 0.0

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("data")
        d.pop("reference")
        d["bytes"] = None if self.data is None else len(self.data)
        return d


# --- small encoders -------------------------------------------------------------------------
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(width: int, height: int, *, rows: int = 4) -> bytes:
    """A syntactically valid 8-bit RGB PNG whose IHDR declares ``width x height``.

    Only ``rows`` scanlines of zeros are present (a few hundred KiB inflated at most), so a
    decoder that trusts the header and allocates ``width * height * 3`` bytes is the bug,
    not the file size. A real bomb would be the same header with ~7 MiB of deflated zeros.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = (b"\x00" + b"\x00" * (width * 3)) * rows
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the first SOFn marker of ``jpeg`` to declare ``width x height`` (max 65535)."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError("not a marker-aligned JPEG")
        marker = jpeg[i + 1]
        seg_len = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            out = bytearray(jpeg)
            out[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        i += 2 + seg_len
    raise ValueError("no SOF marker")


def rgb_of(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _cv2_encode(ext: str, img: np.ndarray, params: tuple = ()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise RuntimeError(f"cv2 cannot encode {ext}")
    return buf.tobytes()


def _pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# --- the catalogue --------------------------------------------------------------------------
def _undecodable(dog: bytes) -> list[Case]:
    png = (IMAGES / "girl.png").read_bytes()
    return [
        Case("bad/empty.jpg", b"", "failed", "0-byte object", "preprocess", "ImageDecodeError"),
        Case(
            "bad/truncated-scan.jpg", dog[: len(dog) // 2], "failed",
            "JPEG cut in the middle of the entropy-coded scan", "preprocess", "ImageDecodeError",
        ),
        Case(
            "bad/truncated-header.jpg", dog[:300], "failed",
            "JPEG cut inside its headers", "preprocess", "ImageDecodeError",
        ),
        Case(
            "bad/truncated.png", png[: len(png) * 2 // 3], "failed",
            "PNG cut inside its IDAT data", "preprocess", "ImageDecodeError",
        ),
        Case(
            "bad/text.jpg", b"This is a text file renamed to .jpg\n" * 20, "failed",
            "plain text with an image extension", "preprocess", "ImageDecodeError",
        ),
        Case(
            "bad/bomb-50000.png", png_declaring(50_000, 50_000), "failed",
            "PNG declaring 50,000 x 50,000 (decompression bomb)", "preprocess",
            "ImageTooLargeError",
        ),
        Case(
            "bad/bomb-50000.jpg", jpeg_with_declared_size(dog, 50_000, 50_000), "failed",
            "JPEG whose SOF declares 50,000 x 50,000", "preprocess", "ImageTooLargeError",
        ),
    ]


def _opencv_variants(rgb: np.ndarray) -> list[Case]:
    bgr = rgb[:, :, ::-1]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    gray3 = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.dstack([bgr, np.full(gray.shape, 255, np.uint8)])
    u16 = bgr.astype(np.uint16) * 257  # exact: (v * 257) >> 8 == v
    return [
        Case("odd/gray.png", _cv2_encode(".png", gray), "succeeded", "8-bit grayscale PNG",
             reference=gray3),
        Case("odd/gray.jpg", _cv2_encode(".jpg", gray, (cv2.IMWRITE_JPEG_QUALITY, 95)),
             "succeeded", "grayscale JPEG", reference=gray3, atol=3.0),
        Case("odd/rgba.png", _cv2_encode(".png", rgba), "succeeded",
             "RGBA PNG, opaque alpha", reference=rgb),
        Case("odd/16bit.png", _cv2_encode(".png", u16), "succeeded", "16-bit RGB PNG",
             reference=rgb),
        Case("odd/1x3000.png", _cv2_encode(".png", bgr[:1, :, :].repeat(4, axis=1)[:, :3000]),
             "succeeded", "1 pixel tall, 3000 wide (extreme aspect ratio)",
             reference=np.ascontiguousarray(rgb[:1].repeat(4, axis=1)[:, :3000])),
        Case("odd/lossless.webp", _cv2_encode(".webp", bgr, (cv2.IMWRITE_WEBP_QUALITY, 101)),
             "succeeded", "lossless WebP", reference=rgb),
    ]


def _pillow_variants(rgb: np.ndarray) -> list[Case]:
    if Image is None:
        return []
    im = Image.fromarray(rgb)
    pal = im.quantize(256)
    frame2 = Image.new("RGB", im.size, (0, 0, 0)).quantize(2)
    gif_first = np.asarray(im.quantize(256).convert("RGB"))
    # EXIF orientation 6 = "rotate 90 degrees clockwise to display": store the upright image
    # rotated 90 degrees counter-clockwise, so a decoder that honours the tag gets ``rgb`` back.
    stored = im.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif_jpeg = _pil_bytes(stored, "JPEG", quality=95, exif=exif.tobytes())
    raw = cv2.imdecode(
        np.frombuffer(exif_jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    upright = np.ascontiguousarray(np.rot90(raw[:, :, ::-1], k=-1))
    return [
        Case("odd/cmyk.jpg", _pil_bytes(im.convert("CMYK"), "JPEG", quality=95), "succeeded",
             "CMYK JPEG (Adobe APP14)", reference=rgb, atol=4.0),
        Case("odd/palette.png", _pil_bytes(pal, "PNG"), "succeeded", "palette (P mode) PNG",
             reference=np.asarray(pal.convert("RGB"))),
        Case("odd/animated.gif",
             _pil_bytes(im.quantize(256), "GIF", save_all=True, append_images=[frame2],
                        duration=100, loop=0),
             "succeeded", "animated GIF, 2 frames (2nd black): first frame used",
             reference=gif_first),
        Case("odd/exif-rot6.jpg", exif_jpeg, "succeeded",
             "JPEG with EXIF Orientation=6 (pixels stored rotated)", reference=upright),
    ]


def _good(names: list[str]) -> list[Case]:
    cases = []
    for name in names:
        path = IMAGES / name
        cases.append(Case(f"good/{name}", path.read_bytes(), "succeeded", "sample image",
                          reference=rgb_of(path)))
    return cases


def _tricky_keys(dog: bytes, rgb: np.ndarray) -> list[Case]:
    return [
        Case("keys/with space/dog 1.jpg", dog, "succeeded", "spaces in key", reference=rgb),
        Case("keys/ünïcödé/狗.jpg", dog, "succeeded", "unicode key", reference=rgb),
        Case("keys/plus+sign.jpg", dog, "succeeded", "'+' in key (not a space)",
             reference=rgb),
        Case("keys/pct%20literal.jpg", dog, "succeeded", "literal '%20' in key", reference=rgb),
        Case("keys/missing.jpg", None, "failed", "key never uploaded", None,
             "ObjectNotFoundError"),
    ]


GOOD = ["dog.jpg", "person.jpg", "horses.jpg", "girl.png", "kite.jpg"]


def build_cases(good: list[str] | None = None) -> list[Case]:
    """Every image case, good images first. Keys are relative to the input prefix."""
    dog = (IMAGES / "dog.jpg").read_bytes()
    rgb = rgb_of(IMAGES / "dog.jpg")
    return (
        _good(GOOD if good is None else good)
        + _undecodable(dog)
        + _opencv_variants(rgb)
        + _pillow_variants(rgb)
        + _tricky_keys(dog, rgb)
    )


PILLOW_CASES: tuple[str, ...] = ("odd/cmyk.jpg", "odd/palette.png", "odd/animated.gif",
                                 "odd/exif-rot6.jpg")


def write_corpus(out: Path) -> list[Case]:
    out = Path(out)
    cases = build_cases()
    for c in cases:
        if c.data is None:
            continue
        p = out / c.key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(c.data)
    (out / "cases.json").write_text(
        json.dumps([c.describe() for c in cases], indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_bad_inputs.py OUTDIR", file=sys.stderr)
        return 2
    cases = write_corpus(Path(argv[0]))
    print(f"wrote {sum(c.data is not None for c in cases)} files + cases.json to {argv[0]}")
    if Image is None:
        print(f"Pillow missing: skipped {', '.join(PILLOW_CASES)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
