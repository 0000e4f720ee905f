"""Bench models, built once and cached under ``.cache/bench`` (never committed).

* random-weights models: ``testdata/cfg/<cfg>.cfg`` at a given input size -> darknet
  ``.weights`` (``yolo_sfn.darknet.weights.random_weights``, seed 0, with *trained-like*
  sparse heads, see :func:`trained_like_weights`) -> TFLite via the project converter.
  The same ``.cfg`` + ``.weights`` feed OpenCV DNN, so both runtimes see the same network
  and the same numbers.
* the demo model (real COCO yolov3-tiny): ``yolo_sfn.demo.ensure_demo_model()``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from yolo_sfn.bench.pipeline import DEFAULT_IMAGES, REPO_ROOT

CACHE = REPO_ROOT / ".cache" / "bench"
CFG_DIR = REPO_ROOT / "testdata" / "cfg"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sized_cfg(cfg: Path, size: int, out: Path) -> Path:
    """Copy of ``cfg`` with [net] width/height = ``size`` (for OpenCV, which has no override)."""
    text = cfg.read_text()
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={size}", text, count=1)
    text = re.sub(r"(?m)^\s*height\s*=.*$", f"height={size}", text, count=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


# Head convolutions of trained-like random weights: objectness and class rows get their
# kernel scaled and a negative bias, so only ~1-2 % of rows are objects and ~2 % of classes
# fire per row (a trained detector's sparsity); box rows stay as random_weights made them.
HEAD_KERNEL_SCALE = {"objectness": 120.0, "class": 80.0}
HEAD_BIAS = {"objectness": -7.0, "class": -8.0}


def trained_like_weights(network, seed: int = 0) -> list:
    """``random_weights`` with sparse heads (see HEAD_*).

    Plain random weights make ~half of all cells an object of ~half of all classes
    (~500,000 candidates on YOLOv4-416, ~90 s of NMS per image), which no trained model does.
    """
    from yolo_sfn.darknet.weights import layout, random_weights

    arrays = random_weights(network, seed)
    head_inputs = {i for layer in network.layers if layer.kind == "yolo" for i in layer.inputs}
    pos = 0
    for layer, parts in layout(network):
        if layer.index in head_inputs:
            names = [n for n, _ in parts]
            bias, kernel = (
                arrays[pos + names.index("bias")],
                arrays[pos + names.index("kernel_oihw")],
            )
            nc = next(
                lay.params.classes
                for lay in network.layers
                if lay.kind == "yolo" and layer.index in lay.inputs
            )
            k = np.arange(bias.shape[0]) % (5 + nc)  # channel -> field within its anchor
            for field, rows in (("objectness", k == 4), ("class", k >= 5)):
                kernel[rows] *= np.float32(HEAD_KERNEL_SCALE[field])
                bias[rows] = np.float32(HEAD_BIAS[field])
        pos += len(parts)
    return arrays


def random_darknet(cfg_name: str, size: int, *, seed: int = 0) -> tuple[Path, Path]:
    """(sized cfg, trained-like random .weights) for ``testdata/cfg/<cfg_name>.cfg``."""
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import write_weights_file

    src = CFG_DIR / f"{cfg_name}.cfg"
    cfg = sized_cfg(src, size, CACHE / f"{cfg_name}-{size}.cfg")
    weights = CACHE / f"{cfg_name}-{size}-seed{seed}-tl.weights"
    stamp = weights.with_suffix(".json")
    key = {"cfg_sha256": _sha(cfg), "seed": seed, "heads": [HEAD_KERNEL_SCALE, HEAD_BIAS]}
    if not weights.exists() or not stamp.exists() or json.loads(stamp.read_text()) != key:
        write_weights_file(weights, trained_like_weights(parse_cfg(cfg), seed), major=0, minor=2)
        stamp.write_text(json.dumps(key))
    return cfg, weights


def random_model(
    cfg_name: str,
    size: int,
    precision: str = "fp32",
    *,
    seed: int = 0,
    calibration: Path | None = None,
) -> Path:
    """Converted ``.tflite`` (+ sidecar) of the random-weights ``cfg_name`` at ``size``."""
    from yolo_sfn.convert import convert

    cfg, weights = random_darknet(cfg_name, size, seed=seed)
    out = CACHE / f"{cfg_name}-{size}-seed{seed}-tl-{precision}.tflite"
    stamp = out.with_name(out.name + ".stamp")
    key = json.dumps({"weights_sha256": _sha(weights), "cfg_sha256": _sha(cfg)})
    if not out.exists() or not stamp.exists() or stamp.read_text() != key:
        calib = calibration or DEFAULT_IMAGES if precision == "int8" else None
        convert(
            cfg,
            weights,
            out,
            precision=precision,
            calibration=calib,
            name=f"{cfg_name}-{size}-random",
        )
        stamp.write_text(key)
    return out


def demo_model() -> Path:
    """The demo's real COCO yolov3-tiny (fp32), fetched/converted by ``yolo_sfn.demo``."""
    from yolo_sfn.demo import ensure_demo_model

    return Path(ensure_demo_model())
