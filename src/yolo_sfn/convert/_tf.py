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
        # TF itself never computes our outputs (TFLite does), so oneDNN's reordered float
        # math buys nothing here; turning it off also silences its start-up banner.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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
