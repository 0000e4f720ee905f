"""darknet -> TFLite conversion. The only package that imports TensorFlow (lazily, on first use).

Public entry point: :func:`yolo_sfn.convert.tflite.convert` (re-exported as ``convert``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["convert", "source_fingerprint"]


def source_fingerprint() -> str:
    """16 hex digits of a hash of the converter's and the darknet parser's sources: caches of
    converted models (tests, benchmarks) key on it, so a converter change never serves a stale
    model."""
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted([*(pkg / "convert").glob("*.py"), *(pkg / "darknet").glob("*.py")]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def convert(*args: Any, **kwargs: Any):
    """See :func:`yolo_sfn.convert.tflite.convert`."""
    from yolo_sfn.convert.tflite import convert as _convert

    return _convert(*args, **kwargs)
