"""Fuzz ``yolo_sfn.core.image.decode_image``: any bytes give an RGB image or a named error.

The contract under test: for any input, ``decode_image`` either returns a C-contiguous
``(H, W, 3)`` uint8 array with ``H * W <= max_pixels``, or raises ``ImageDecodeError`` /
``ImageTooLargeError`` whose message names the input -- never another exception, never a
hang. Inputs: random bytes, random bytes behind each supported magic number (drives the
header parsers), and mutations of the real sample images in ``testdata/images``.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from fuzz_profiles import fuzz_settings, time_limit
from hypothesis import example, given
from hypothesis import strategies as st

image = pytest.importorskip("yolo_sfn.core.image")
from yolo_sfn.errors import ImageDecodeError, ImageTooLargeError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "testdata" / "images").iterdir())
NAME = "s3://fuzz/input.bin"
LIMIT_S = 20  # per example; a real decode of the largest sample takes ~0.2 s

MAGICS = [
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF89a",
    b"GIF87a",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"P6\n",
    b"P5 ",
]


@cache
def sample(name: str) -> bytes:
    return (ROOT / "testdata" / "images" / name).read_bytes()


def check_decode(data: bytes, max_pixels: int = image.DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """The whole contract for one input; returns the image or None (a named error)."""
    with time_limit(LIMIT_S):
        try:
            rgb = image.decode_image(data, name=NAME, max_pixels=max_pixels)
        except (ImageDecodeError, ImageTooLargeError) as e:
            msg = str(e)
            assert NAME in msg, f"error does not name the input: {msg!r}"
            assert "\n" not in msg.strip(), f"multi-line error: {msg!r}"
            assert "Traceback" not in msg
            return None
    assert isinstance(rgb, np.ndarray), type(rgb)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, (rgb.dtype, rgb.shape)
    assert rgb.shape[0] > 0 and rgb.shape[1] > 0
    assert rgb.shape[0] * rgb.shape[1] <= max_pixels, (rgb.shape, max_pixels)
    return rgb


@fuzz_settings()
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x00")
@example(b"\xff\xd8\xff\xd9")
def test_random_bytes(data: bytes) -> None:
    check_decode(data)


@fuzz_settings()
@given(st.sampled_from(MAGICS), st.binary(max_size=512))
@example(b"\xff\xd8\xff", b"\xc0\x00\x11\x08\xff\xff\xff\xff\x03")
@example(b"II*\x00", b"\xff\xff\xff\xff")
@example(b"P6\n", b"99999 99999\n255\n")
def test_magic_then_random(magic: bytes, tail: bytes) -> None:
    check_decode(magic + tail)


@st.composite
def mutated_sample(draw) -> tuple[str, bytes]:
    """A real sample with 1-8 edits: flips, overwrites, truncation, duplication, insertion."""
    name = draw(st.sampled_from([p.name for p in SAMPLES]))
    data = bytearray(sample(name))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "dup", "header"]))
        n = len(data)
        if n == 0:
            break
        # bias positions to the first 2 KiB: that is where the headers are
        pos = draw(st.one_of(st.integers(0, min(n, 2048) - 1), st.integers(0, n - 1)))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "dup":
            end = min(n, pos + draw(st.integers(1, 4096)))
            data[pos:pos] = data[pos:end]
        else:  # a big-endian 16/32-bit field: where widths, heights and lengths live
            fmt = draw(st.sampled_from([">H", ">I", "<H", "<I"]))
            if pos + struct.calcsize(fmt) <= n:
                value = draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
                value &= (1 << (8 * struct.calcsize(fmt))) - 1
                struct.pack_into(fmt, data, pos, value)
    return name, bytes(data)


@fuzz_settings()
@given(mutated_sample())
def test_mutated_samples(case: tuple[str, bytes]) -> None:
    check_decode(case[1])


@fuzz_settings(50)
@given(mutated_sample(), st.integers(1, 400_000))
def test_mutated_samples_small_limit(case: tuple[str, bytes], max_pixels: int) -> None:
    """With a limit below the samples' size, nothing over the limit is ever returned."""
    check_decode(case[1], max_pixels=max_pixels)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_decode(path: Path) -> None:
    rgb = check_decode(path.read_bytes())
    assert rgb is not None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_truncation_point_of_headers(path: Path) -> None:
    """Cut each sample at every byte of its first 1 KiB and at 64 points after: no surprises."""
    data = path.read_bytes()
    cuts = list(range(0, min(1024, len(data)))) + list(range(1024, len(data), len(data) // 64))
    for cut in cuts:
        assert check_decode(data[:cut]) is None, f"{path.name} cut at byte {cut} decoded"


preprocess_mod = pytest.importorskip("yolo_sfn.core.preprocess")


@fuzz_settings()
@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from(["stretch", "letterbox"]),
       st.sampled_from([(416, 416), (320, 320), (608, 608), (256, 416)]))
def test_preprocess_any_image_size(h: int, w: int, mode: str, size: tuple[int, int]) -> None:
    """Any decodable size (1 x 4000 included) -> (1, H, W, 3) uint8 and an invertible
    Transform that survives the JSON trip between the Preprocess and Postprocess states."""
    import json

    rgb = np.zeros((h, w, 3), np.uint8)
    batch, t = preprocess_mod.to_network_input(rgb, size, mode=mode)
    assert batch.shape == (1, *size, 3) and batch.dtype == np.uint8
    t2 = preprocess_mod.Transform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2 == t
    box = np.array([[0.0, 0.0, w, h]], np.float32)
    back = t2.norm_to_src_xyxy(t2.src_to_norm_xyxy(box))
    assert np.all(np.isfinite(back))
    np.testing.assert_allclose(back, box, rtol=1e-3, atol=0.05 * max(h, w) / min(size) + 1e-3)
