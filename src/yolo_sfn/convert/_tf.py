"""The one place that imports TensorFlow (lazily, with a clear error when it is missing)."""

from __future__ import annotations

import os
from types import ModuleType

from yolo_sfn.errors import ConversionError

_tf: ModuleType | None = None


def tensorflow() -> ModuleType:
    global _tf
    if _tf is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf
        except ImportError as e:
            raise ConversionError(
                f"model conversion needs TensorFlow ({e}); "
                "install it with: pip install 'yolo-sfn[convert]'"
            ) from None
        tf.get_logger().setLevel("ERROR")
        _tf = tf
    return _tf
