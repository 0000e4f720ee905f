"""Darknet description + weights -> TensorFlow forward function (NHWC), driven by one registry.

:data:`REGISTRY` maps a cfg section to a :class:`Handler` whose ``load`` turns the next darknet
arrays into TF-ready arrays (``None`` for unweighted layers) and whose ``build`` emits TF ops.
:func:`load_weights` and :func:`build_forward` both walk the layers through that one table.

Padding follows darknet exactly:

* conv ``pad=1``: ``size // 2`` zeros on every side. TF ``SAME`` is used only where it pads the
  same way (stride 1, odd size); otherwise an explicit ``tf.pad`` + ``VALID`` (TF ``SAME`` puts
  the odd pixel on the bottom/right, darknet pads symmetrically).
* maxpool: ``padding`` (default ``size - 1``) in total, ``padding // 2`` top/left, padded
  pixels read ``-FLT_MAX`` (as in darknet). Output ``(in + padding - size) // stride + 1``.
  ``SAME`` where identical (size 2 stride 1, SPP 5/9/13 stride 1, even input with size 2
  stride 2), else an explicit ``-FLT_MAX`` pad + ``VALID``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolo_sfn.convert import winograd
from yolo_sfn.darknet.cfg import NETWORK_INPUT, ConvParams, Layer, Network
from yolo_sfn.darknet.weights import BN_EPSILON, Header, WeightsReader, read_conv_weights
from yolo_sfn.errors import ConversionError, WeightsError

# darknet kernel (out, in, h, w) -> TF conv2d kernel (h, w, in, out)
OIHW_TO_HWIO = (2, 3, 1, 0)
# darknet depthwise kernel (out=channels, 1, h, w) -> TF depthwise kernel (h, w, channels, 1)
OIHW_TO_HWOI = (2, 3, 0, 1)

Weights = dict[str, np.ndarray]
FLT_MAX = float(np.finfo(np.float32).max)  # darknet's maxpool fill is -FLT_MAX


@dataclass(frozen=True)
class Handler:
    """One cfg section.

    load(reader, layer) -> Weights | None
    build(tf, layer, inputs, weights, options) -> tensor
    """

    load: Callable[[WeightsReader, Layer], Weights | None]
    build: Callable[[Any, Layer, list, Weights | None, BuildOptions], Any]


@dataclass(frozen=True)
class BuildOptions:
    """How to emit ops. ``winograd``: eligible 3x3 stride-1 convs (:mod:`.winograd`) become
    Winograd F(2x2, 3x3) graphs (float32 models only: quantized transforms lose accuracy)."""

    winograd: bool = False


PLAIN = BuildOptions()


# --- helpers ---------------------------------------------------------------------------------
def _same_matches(size_in: int, k: int, s: int, before: int, out: int) -> bool:
    """Does TF 'SAME' give the darknet window placement (``before`` pad, ``out`` outputs)?"""
    tf_out = -(-size_in // s)
    tf_before = max((tf_out - 1) * s + k - size_in, 0) // 2
    return tf_out == out and tf_before == before


def _valid_matches(size_in: int, k: int, s: int, before: int, out: int) -> bool:
    return before == 0 and (size_in - k) // s + 1 == out


def _padding_mode(layer: Layer, k: int, s: int, before: int) -> str:
    """'VALID', 'SAME', or 'EXPLICIT' (caller pads, then VALID)."""
    (h, w, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape
    if _valid_matches(h, k, s, before, oh) and _valid_matches(w, k, s, before, ow):
        return "VALID"
    if _same_matches(h, k, s, before, oh) and _same_matches(w, k, s, before, ow):
        return "SAME"
    return "EXPLICIT"


def _explicit_pad(tf, x, layer: Layer, k: int, s: int, before: int, value: float):
    """Pad ``before`` top/left and whatever darknet's output size needs bottom/right."""
    (h, w, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape
    after_h = max((oh - 1) * s + k - h - before, 0)
    after_w = max((ow - 1) * s + k - w - before, 0)
    return tf.pad(x, [[0, 0], [before, after_h], [before, after_w], [0, 0]], constant_values=value)


ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "linear": lambda tf, x: x,
    "leaky": lambda tf, x: tf.nn.leaky_relu(x, alpha=0.1),
    "relu": lambda tf, x: tf.nn.relu(x),
    "logistic": lambda tf, x: tf.math.sigmoid(x),
    "swish": lambda tf, x: x * tf.math.sigmoid(x),
    # mish = x * tanh(softplus(x)); TFLite lowers softplus to EXP, ADD, LOG
    "mish": lambda tf, x: x * tf.math.tanh(tf.math.softplus(x)),
}


# --- convolutional -----------------------------------------------------------------------
def _is_depthwise(layer: Layer) -> bool:
    p: ConvParams = layer.params
    return p.groups > 1 and p.groups == p.filters == layer.in_shapes[0][2]


def _load_conv(reader: WeightsReader, layer: Layer) -> Weights:
    """Darknet arrays -> ``{"kernel": HWIO (or HWC1 depthwise), "bias": (out,)}`` with BN folded."""
    p: ConvParams = layer.params
    if p.groups > 1 and not _is_depthwise(layer):
        raise ConversionError(
            f"layer {layer.index} (cfg line {layer.line}): "
            f"grouped convolution with groups={p.groups} "
            "is only supported as depthwise (groups == filters == input channels)"
        )
    w = read_conv_weights(reader, layer)
    kernel = w["kernel_oihw"].astype(np.float32)
    bias = w["bias"].astype(np.float32)
    if p.batch_normalize:
        if not (w["variance"] >= 0).all():  # also catches NaN
            raise WeightsError(
                f"{reader.path}: layer {layer.index} (cfg line {layer.line}): negative or NaN "
                "batch-norm variance (corrupt weights, or weights for another cfg?)"
            )
        scale = w["gamma"] / (np.sqrt(w["variance"]) + BN_EPSILON)  # (out,)
        kernel = kernel * scale[:, None, None, None]
        bias = bias - w["mean"] * scale
    perm = OIHW_TO_HWOI if _is_depthwise(layer) else OIHW_TO_HWIO
    return {
        "kernel": np.ascontiguousarray(kernel.transpose(perm), dtype=np.float32),
        "bias": bias.astype(np.float32),
    }


def uses_winograd(layer: Layer, w: Weights | None, opts: BuildOptions) -> bool:
    """Is this layer emitted as a Winograd F(2x2, 3x3) graph?"""
    return (
        opts.winograd
        and layer.kind == "convolutional"
        and layer.params.groups == 1
        and w is not None
        and winograd.eligible(w["kernel"].shape, layer.params.stride, layer.params.pad_px)
    )


def _build_conv(tf, layer: Layer, inputs: list, w: Weights | None, opts: BuildOptions = PLAIN):
    p: ConvParams = layer.params
    x = inputs[0]
    k, s, pad = p.size, p.stride, p.pad_px
    mode = _padding_mode(layer, k, s, pad)
    if mode == "EXPLICIT":
        x = _explicit_pad(tf, x, layer, k, s, pad, 0.0)
        mode = "VALID"
    if _is_depthwise(layer):
        x = tf.nn.bias_add(tf.nn.depthwise_conv2d(x, w["kernel"], [1, s, s, 1], mode), w["bias"])
    elif uses_winograd(layer, w, opts):
        x = winograd.conv3x3(tf, inputs[0], w["kernel"], w["bias"])
    else:
        x = tf.nn.bias_add(tf.nn.conv2d(x, w["kernel"], s, mode), w["bias"])
    return ACTIVATIONS[p.activation](tf, x)


# --- unweighted layers -----------------------------------------------------------------------
def _no_weights(reader: WeightsReader, layer: Layer) -> None:
    return None


def _build_route(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    p = layer.params
    parts = []
    for x, (_, _, c) in zip(inputs, layer.in_shapes, strict=True):
        if p.groups > 1:  # darknet takes chunk group_id of each input's channels
            part = c // p.groups
            x = x[..., p.group_id * part : (p.group_id + 1) * part]
        parts.append(x)
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def _build_shortcut(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    x = inputs[0]
    for other in inputs[1:]:
        x = x + other
    return ACTIVATIONS[layer.params.activation](tf, x)


def _build_maxpool(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    p = layer.params
    x = inputs[0]
    mode = _padding_mode(layer, p.size, p.stride, p.pad_before)
    if mode == "EXPLICIT":
        x = _explicit_pad(tf, x, layer, p.size, p.stride, p.pad_before, -FLT_MAX)
        mode = "VALID"
    return tf.nn.max_pool2d(x, p.size, p.stride, mode)


def _build_upsample(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    p = layer.params
    h, w_, _ = layer.out_shape
    x = tf.compat.v1.image.resize_nearest_neighbor(
        inputs[0], (h, w_), align_corners=False, half_pixel_centers=False
    )
    return x * p.scale if p.scale != 1.0 else x


def _build_yolo(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    return inputs[0]  # the head is the raw tensor feeding [yolo]; decoding happens in numpy


REGISTRY: dict[str, Handler] = {
    "convolutional": Handler(_load_conv, _build_conv),
    "route": Handler(_no_weights, _build_route),
    "shortcut": Handler(_no_weights, _build_shortcut),
    "maxpool": Handler(_no_weights, _build_maxpool),
    "upsample": Handler(_no_weights, _build_upsample),
    "yolo": Handler(_no_weights, _build_yolo),
}


def load_weights(network: Network, weights_path: str | Path) -> tuple[Header, dict[int, Weights]]:
    """Read every weighted layer via :data:`REGISTRY`; checks that every float was consumed."""
    reader = WeightsReader(weights_path, network)
    arrays: dict[int, Weights] = {}
    for layer in network.layers:
        w = REGISTRY[layer.kind].load(reader, layer)
        if w is not None:
            arrays[layer.index] = w
    reader.finish()
    return reader.header, arrays


def build_forward(
    tf, network: Network, weights: dict[int, Weights], options: BuildOptions | None = None
) -> Callable:
    """``forward(x (1, H, W, C) float32 in [0, 1]) -> tuple of heads (1, h, w, A * (5 + C))``,
    heads in ``[yolo]`` declaration order."""
    opts = options or BuildOptions()

    def forward(x):
        outs = {NETWORK_INPUT: x}
        for layer in network.layers:
            ins = [outs[i] for i in layer.inputs]
            w = weights.get(layer.index)
            outs[layer.index] = REGISTRY[layer.kind].build(tf, layer, ins, w, opts)
        return tuple(outs[i] for i in network.yolo_indices)

    return forward
