"""Darknet cfg + weights -> ``model.tflite`` + ``model.tflite.json`` (:class:`ModelMeta`).

Precisions:

* ``fp32``: float32 in, float32 heads out. 3x3 stride-1 convs with >= 64 input channels are
  emitted as Winograd F(2x2, 3x3) graphs (:mod:`yolo_sfn.convert.winograd`; ``winograd=False``
  keeps plain ``CONV_2D``): YOLOv4-416 runs ~1.4x faster, outputs within ~1e-6 relative.
* ``fp16``: float16 weights (dequantized at load), float32 in/out.
* ``int8``: full integer (``TFLITE_BUILTINS_INT8``), uint8 input (scale ~1/255, so raw pixels
  quantize exactly), int8 heads. Calibrated on user images preprocessed exactly like the
  runtime: stretch resize with ``cv2.INTER_LINEAR`` on uint8 RGB, then ``/ 255``. Quantization
  parameters live only in the tensors; the runtime reads them from the interpreter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from yolo_sfn.contract import IMAGE_EXTENSIONS
from yolo_sfn.convert._tf import tensorflow
from yolo_sfn.convert.graph import BuildOptions, build_forward, load_weights, uses_winograd
from yolo_sfn.darknet.cfg import Layer, Network, parse_cfg
from yolo_sfn.errors import ConversionError, InputFileError
from yolo_sfn.model.meta import PRECISIONS, HeadMeta, ModelMeta, sha256_file

MAX_CALIBRATION_IMAGES = 300


@dataclass(frozen=True)
class ConversionResult:
    path: Path
    meta: ModelMeta
    seconds: float


def read_names(path: str | Path | None) -> list[str]:
    """Class names, one per line (blank lines dropped). ``None``: the bundled COCO list."""
    if path is None:
        text = resources.files("yolo_sfn.data").joinpath("coco.names").read_text()
    else:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise InputFileError(f"{path}: names file not found") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def head_meta(network: Network, layer: Layer) -> HeadMeta:
    """One head's sidecar entry. Region anchors (grid cells) become input pixels."""
    p = layer.params
    gh, gw, _ = layer.out_shape
    height, width, _ = network.input_shape
    if layer.kind == "region":
        anchors = [[w * width / gw, h * height / gh] for w, h in p.masked_anchors]
        return HeadMeta(grid=(gh, gw), stride=height // gh, anchors=anchors, kind="region",
                        softmax=p.softmax)
    return HeadMeta(
        grid=(gh, gw),
        stride=height // gh,
        anchors=[list(a) for a in p.masked_anchors],
        scale_x_y=p.scale_x_y,
        new_coords=p.new_coords,
        kind="gaussian_yolo" if layer.kind == "Gaussian_yolo" else "yolo",
    )


def build_meta(
    network: Network,
    *,
    name: str,
    names: list[str],
    precision: str,
    weights_sha256: str,
    source: dict,
) -> ModelMeta:
    yolos = network.yolo_layers
    classes = {y.params.classes for y in yolos}
    if len(classes) != 1:
        raise ConversionError(
            f"{network.path}: detection heads disagree on classes: {sorted(classes)}"
        )
    (num_classes,) = classes
    if len(names) != num_classes:
        raise ConversionError(
            f"{source.get('names', 'names')}: {len(names)} class names "
            f"for {num_classes} classes in {network.path}"
        )
    heads = [head_meta(network, y) for y in yolos]
    # darknet's detector takes nms_kind / beta_nms from its LAST detection layer (detector.c
    # test_detector); a [region] head has none (greedy)
    last = yolos[-1].params if yolos[-1].kind != "region" else None
    return ModelMeta(
        name=name,
        input_size=(network.net.height, network.net.width),
        num_classes=num_classes,
        names=names,
        heads=heads,
        precision=precision,
        weights_sha256=weights_sha256,
        cfg_sha256=network.sha256,
        nms_kind=last.nms_kind if last else "greedy",
        beta_nms=last.beta_nms if last else 0.6,
        letter_box=network.net.letter_box,
        source=source,
    )


def calibration_images(directory: str | Path, size_hw: tuple[int, int]) -> list[np.ndarray]:
    """``[(1, H, W, 3) float32 RGB / 255]`` from every image in ``directory`` (sorted, capped)."""
    import cv2

    d = Path(directory)
    if not d.is_dir():
        raise InputFileError(f"{d}: calibration directory not found")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[
        :MAX_CALIBRATION_IMAGES
    ]
    batches = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConversionError(f"{f}: calibration image could not be decoded")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)
        batches.append(resized[None].astype(np.float32) / 255.0)
    if not batches:
        raise ConversionError(f"{d}: no calibration images ({', '.join(IMAGE_EXTENSIONS)})")
    return batches


def _converter(
    tf,
    network: Network,
    weights: dict,
    precision: str,
    batches: list[np.ndarray],
    options: BuildOptions,
):
    """A TFLite converter over a plain TF graph: input ``image`` (1, H, W, C) float32 [0, 1],
    outputs ``head_0..`` in [yolo] order.

    The graph is built directly (weights as Const nodes, so it is already frozen) and handed to
    the GraphDef converter: no tf.function tracing, freezing or SavedModel round trip. yolov4:
    ~15 s here against ~24 s via ``from_concrete_functions`` and ~65 s via a SavedModel.
    """
    h, w, c = network.input_shape
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, (1, h, w, c), name="image")
        heads = build_forward(tf, network, weights, options)(image)
        heads = [tf.identity(t, name=f"head_{i}") for i, t in enumerate(heads)]
    conv = tf.compat.v1.lite.TFLiteConverter(graph.as_graph_def(), [image], heads)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":

        def representative() -> Iterator[list[np.ndarray]]:
            for b in batches:
                yield [b]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
    return conv


def convert(
    cfg: str | Path,
    weights: str | Path,
    out: str | Path,
    *,
    names: str | Path | None = None,
    size: int | tuple[int, int] | None = None,
    precision: str = "fp32",
    calibration: str | Path | None = None,
    name: str | None = None,
    winograd: bool | None = None,
) -> ConversionResult:
    """Convert; write ``out`` and its ``out.json`` sidecar. ``size`` overrides [net] width/height
    (an int, or (height, width) for a non-square input).
    ``winograd``: None = on for fp32 (module docstring), True (fp32 only) / False force it.

    Raises InputFileError, CfgError, WeightsError, ConversionError (one line, naming the file).
    """
    t0 = time.perf_counter()
    if precision not in PRECISIONS:
        raise ConversionError(f"precision {precision!r} not in {PRECISIONS}")
    if precision == "int8" and calibration is None:
        raise ConversionError(
            "int8 conversion needs --calibration DIR (a folder of representative images)"
        )
    if winograd is None:
        winograd = precision == "fp32"
    if winograd and precision != "fp32":
        raise ConversionError(f"Winograd convolutions need --precision fp32, not {precision}")
    network = parse_cfg(cfg, size=size)
    class_names = read_names(names)
    _, arrays = load_weights(network, weights)
    options = BuildOptions(winograd=winograd)
    n_winograd = sum(uses_winograd(la, arrays.get(la.index), options) for la in network.layers)
    batches = (
        calibration_images(calibration, network.input_shape[:2]) if precision == "int8" else []
    )
    out = Path(out)
    tf = tensorflow()
    meta = build_meta(
        network,
        name=name or out.stem,
        names=class_names,
        precision=precision,
        weights_sha256=sha256_file(weights),
        source={
            "cfg": str(cfg),
            "weights": str(weights),
            "names": str(names) if names else "coco (bundled)",
            "tensorflow": tf.__version__,
            "tool": "yolo-sfn model convert",
            "calibration_images": len(batches),
            "winograd_layers": n_winograd,
        },
    )
    try:
        blob = _converter(tf, network, arrays, precision, batches, options).convert()
    except (ConversionError, InputFileError):
        raise
    except Exception as e:  # TF raises a zoo of types; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"{cfg}: TFLite conversion failed ({first})") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)
    meta.save(out)
    return ConversionResult(out, meta, time.perf_counter() - t0)
