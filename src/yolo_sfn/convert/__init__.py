"""darknet -> TFLite conversion. The only package that imports TensorFlow (lazily, on first use).

Public entry point: :func:`yolo_sfn.convert.tflite.convert` (re-exported as ``convert``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["convert"]


def convert(*args: Any, **kwargs: Any):
    """See :func:`yolo_sfn.convert.tflite.convert`."""
    from yolo_sfn.convert.tflite import convert as _convert

    return _convert(*args, **kwargs)
