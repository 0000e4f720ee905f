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
from yolo_sfn.darknet.weights import (
    BN_EPSILON,
    Header,
    WeightsReader,
    conv_layout,
    read_conv_weights,
    read_layer_weights,
)
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


def _padding_mode(layer: Layer, k: int, s: int | tuple[int, int], before: int) -> str:
    """'VALID', 'SAME', or 'EXPLICIT' (caller pads, then VALID). ``s``: stride or (sy, sx);
    ``k``: the (effective, for dilated convs) window size."""
    sy, sx = (s, s) if isinstance(s, int) else s
    (h, w, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape
    if _valid_matches(h, k, sy, before, oh) and _valid_matches(w, k, sx, before, ow):
        return "VALID"
    if _same_matches(h, k, sy, before, oh) and _same_matches(w, k, sx, before, ow):
        return "SAME"
    return "EXPLICIT"


def _explicit_pad(tf, x, layer: Layer, k: int, s: int | tuple[int, int], before: int,
                  value: float):
    """Pad ``before`` top/left and whatever darknet's output size needs bottom/right."""
    sy, sx = (s, s) if isinstance(s, int) else s
    (h, w, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape
    after_h = max((oh - 1) * sy + k - h - before, 0)
    after_w = max((ow - 1) * sx + k - w - before, 0)
    return tf.pad(x, [[0, 0], [before, after_h], [before, after_w], [0, 0]], constant_values=value)


ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "linear": lambda tf, x: x,
    "leaky": lambda tf, x: tf.nn.leaky_relu(x, alpha=0.1),
    "relu": lambda tf, x: tf.nn.relu(x),
    "logistic": lambda tf, x: tf.math.sigmoid(x),
    "swish": lambda tf, x: x * tf.math.sigmoid(x),
    # mish = x * tanh(softplus(x)); TFLite lowers softplus to EXP, ADD, LOG
    "mish": lambda tf, x: x * tf.math.tanh(tf.math.softplus(x)),
    # the rest of darknet's activations.h, formula for formula
    "hard_mish": lambda tf, x: tf.where(x > 0, x, tf.where(x > -2, x * x / 2 + x, 0 * x)),
    "loggy": lambda tf, x: 2 * tf.math.sigmoid(x) - 1,
    "relu6": lambda tf, x: tf.nn.relu6(x),
    "elu": lambda tf, x: tf.where(x >= 0, x, tf.math.exp(tf.minimum(x, 0.0)) - 1),
    "selu": lambda tf, x: tf.where(
        x >= 0, 1.0507 * x, 1.0507 * 1.6732 * (tf.math.exp(tf.minimum(x, 0.0)) - 1)
    ),
    "gelu": lambda tf, x: 0.5 * x * (1 + tf.math.tanh(0.797885 * x + 0.035677 * x * x * x)),
    "relie": lambda tf, x: tf.where(x > 0, x, 0.01 * x),
    "ramp": lambda tf, x: tf.nn.relu(x) + 0.1 * x,
    "revleaky": lambda tf, x: tf.nn.leaky_relu(x, alpha=0.1),  # darknet's forward == leaky
    "tanh": lambda tf, x: tf.math.tanh(x),
    "hardtan": lambda tf, x: tf.clip_by_value(x, -1.0, 1.0),
    "lhtan": lambda tf, x: tf.where(x < 0, 0.001 * x, tf.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "plse": lambda tf, x: tf.where(
        x < -4, 0.01 * (x + 4), tf.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)
    ),
}


def _where(layer: Layer) -> str:
    return f"layer {layer.index} (cfg line {layer.line})"


# --- convolutional -----------------------------------------------------------------------
def _is_depthwise(layer: Layer) -> bool:
    p: ConvParams = layer.params
    return p.groups > 1 and p.groups == p.filters == layer.in_shapes[0][2]


def binarize_kernel(kernel_oihw: np.ndarray) -> np.ndarray:
    """darknet ``binarize_weights``: per output filter, ``sign(w) * mean(|w|)`` (sign(0) = -1)."""
    mean = np.abs(kernel_oihw).reshape(kernel_oihw.shape[0], -1).mean(axis=1)
    return np.where(kernel_oihw > 0, 1.0, -1.0) * mean[:, None, None, None]


def problems(network: Network) -> list[str]:
    """One line per layer the converter refuses although the cfg parses ([] = converts:
    every section the parser accepts has a handler; this guards the two tables)."""
    return [f"{_where(layer)}: [{layer.kind}] has no converter" for layer in network.layers
            if layer.kind not in REGISTRY]


def _load_conv(reader: WeightsReader, layer: Layer) -> Weights | None:
    """Darknet arrays -> ``{"kernel": HWIO (HWC1 depthwise; grouped: HW(I/g)O), "bias": (out,)}``
    with BN folded; ``None`` for a conv that shares another layer's weights."""
    p: ConvParams = layer.params
    if p.share_index is not None:
        return None
    w = read_conv_weights(reader, layer)
    kernel = w["kernel_oihw"].astype(np.float32)
    if p.xnor or p.binary:
        kernel = binarize_kernel(kernel).astype(np.float32)
    kernel, bias = fold_batch_norm(w, kernel, p.batch_normalize, f"{reader.path}: {_where(layer)}")
    perm = OIHW_TO_HWOI if _is_depthwise(layer) else OIHW_TO_HWIO
    return {
        "kernel": np.ascontiguousarray(kernel.transpose(perm), dtype=np.float32),
        "bias": bias,
    }


def fold_batch_norm(w: dict, kernel_oihw: np.ndarray, bn: bool, where: str):
    """(kernel OIHW, bias) with darknet's batch norm folded in (module docstring of
    :mod:`yolo_sfn.darknet.weights`); ``w``: the layer's arrays by name."""
    bias = w["bias"].astype(np.float32)
    if bn:
        if not (w["variance"] >= 0).all():  # also catches NaN
            raise WeightsError(
                f"{where}: negative or NaN batch-norm variance "
                "(corrupt weights, or weights for another cfg?)"
            )
        scale = w["gamma"] / (np.sqrt(w["variance"]) + BN_EPSILON)  # (out,)
        kernel_oihw = kernel_oihw * scale[:, None, None, None]
        bias = bias - w["mean"] * scale
    return kernel_oihw.astype(np.float32), bias.astype(np.float32)


def uses_winograd(layer: Layer, w: Weights | None, opts: BuildOptions) -> bool:
    """Is this layer emitted as a Winograd F(2x2, 3x3) graph?"""
    return (
        opts.winograd
        and layer.kind == "convolutional"
        and layer.params.groups == 1
        and layer.params.dilation == 1
        and not layer.params.xnor
        and layer.params.stride_x == layer.params.stride_y
        and w is not None
        and winograd.eligible(w["kernel"].shape, layer.params.stride, layer.params.pad_px)
    )


def _grouped_conv(tf, x, kernel: np.ndarray, groups: int, strides, dilation: int, mode: str):
    """darknet groups: filter block ``g`` reads input channel block ``g`` (split, conv, concat;
    XNNPACK has no grouped CONV_2D of its own)."""
    xs = tf.split(x, groups, axis=-1)
    ks = np.split(kernel, groups, axis=3)
    return tf.concat(
        [tf.nn.conv2d(xi, ki, strides, mode, dilations=dilation) for xi, ki in zip(xs, ks,
                                                                                   strict=True)],
        axis=-1,
    )


def _build_conv(tf, layer: Layer, inputs: list, w: Weights | None, opts: BuildOptions = PLAIN):
    p: ConvParams = layer.params
    x = inputs[0]
    if p.xnor:  # darknet binarize_cpu: x > 0 -> 1, else -1 (before the zero padding)
        x = tf.where(x > 0, tf.ones_like(x), -tf.ones_like(x))
    k_eff = p.dilation * (p.size - 1) + 1
    strides = (p.stride_y, p.stride_x)
    pad = p.pad_px * p.dilation
    subsample = p.dilation > 1 and strides != (1, 1)  # TF: no dilation with stride > 1
    if subsample:  # a strided conv is the stride-1 conv read every stride-th pixel
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        strides, mode = (1, 1), "VALID"
    else:
        mode = _padding_mode(layer, k_eff, strides, pad)
    if mode == "EXPLICIT":
        x = _explicit_pad(tf, x, layer, k_eff, strides, pad, 0.0)
        mode = "VALID"
    tf_strides = [1, *strides, 1]
    if _is_depthwise(layer):
        x = tf.nn.depthwise_conv2d(x, w["kernel"], tf_strides, mode,
                                   dilations=[p.dilation, p.dilation])
    elif uses_winograd(layer, w, opts):
        x = winograd.conv3x3(tf, inputs[0], w["kernel"], w["bias"])
        return ACTIVATIONS[p.activation](tf, x)
    elif p.groups > 1:
        x = _grouped_conv(tf, x, w["kernel"], p.groups, tf_strides, p.dilation, mode)
    else:
        x = tf.nn.conv2d(x, w["kernel"], tf_strides, mode, dilations=p.dilation)
    if subsample:
        oh, ow, _ = layer.out_shape
        x = x[:, :: p.stride_y, :: p.stride_x, :][:, :oh, :ow, :]
    return ACTIVATIONS[p.activation](tf, tf.nn.bias_add(x, w["bias"]))


# --- crnn ---------------------------------------------------------------------------------
def _load_crnn(reader: WeightsReader, layer: Layer) -> Weights:
    """The three convolutions folded: ``{"input.kernel", "input.bias", "self.bias",
    "output.kernel", "output.bias"}`` (the self conv only ever sees the zero state, so only
    its bias survives)."""
    p = layer.params
    arrays = read_layer_weights(reader, layer)
    out: Weights = {}
    for name, _, _ in p.convs(layer.in_shapes[0][2]):
        part = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(name + ".")}
        kernel, bias = fold_batch_norm(part, part["kernel_oihw"].astype(np.float32),
                                       p.batch_normalize, f"{reader.path}: {_where(layer)}")
        out[name + ".kernel"] = np.ascontiguousarray(kernel.transpose(OIHW_TO_HWIO))
        out[name + ".bias"] = bias
    return out


def _build_crnn(tf, layer: Layer, inputs: list, w: Weights, opts: BuildOptions = PLAIN):
    """One time step from the zero state (see ``CrnnParams``)."""
    p = layer.params
    act = ACTIVATIONS[p.activation]
    pad = [[0, 0], [p.pad_px, p.pad_px], [p.pad_px, p.pad_px], [0, 0]]

    def conv(x, name):
        x = tf.pad(x, pad) if p.pad_px else x
        if p.groups > 1:
            y = _grouped_conv(tf, x, w[name + ".kernel"], p.groups, p.stride, 1, "VALID")
        else:
            y = tf.nn.conv2d(x, w[name + ".kernel"], p.stride, "VALID")
        return act(tf, tf.nn.bias_add(y, w[name + ".bias"]))

    state = conv(inputs[0], "input") + act(tf, tf.constant(w["self.bias"]))
    return conv(state, "output")


# --- shortcut -----------------------------------------------------------------------------
def shortcut_scales(layer: Layer, weights: np.ndarray) -> np.ndarray:
    """darknet ``shortcut_multilayer_cpu``'s multipliers as ``(n_inputs, C)`` float32: input
    ``i`` (0 = the previous layer) is multiplied by ``scales[i]`` per output channel."""
    p = layer.params
    n, c = len(layer.inputs), layer.out_shape[2]
    w = weights.reshape(n, -1).astype(np.float64)  # (n, 1) per_feature or (n, C) per_channel
    w = np.broadcast_to(w, (n, c))
    eps = 0.0001
    if p.weights_normalization == "relu":
        r = np.maximum(w, 0)
        w = r / (eps + r.sum(axis=0))
    elif p.weights_normalization == "softmax":
        e = np.exp(w - w.max(axis=0))
        w = e / (eps + e.sum(axis=0))
    return np.ascontiguousarray(w, dtype=np.float32)


def _load_shortcut(reader: WeightsReader, layer: Layer) -> Weights | None:
    arrays = read_layer_weights(reader, layer)
    if not arrays:
        return None
    return {"scales": shortcut_scales(layer, arrays["weights"])}


def _build_shortcut(tf, layer: Layer, inputs: list, w: Weights | None, opts: BuildOptions = PLAIN):
    """darknet's partial add: out = previous layer; each ``from`` layer is added over the
    first min(C, C_from) channels (its extra channels are dropped, missing ones add 0)."""
    scales = None if w is None else w["scales"]
    x = inputs[0] if scales is None else inputs[0] * scales[0]
    c = layer.out_shape[2]
    for i, (other, shape) in enumerate(zip(inputs[1:], layer.in_shapes[1:], strict=True), 1):
        k = min(c, shape[2])
        add = other[..., :k] if shape[2] > k else other
        if scales is not None:
            add = add * scales[i][:k]
        x = x + add if k == c else tf.concat([x[..., :k] + add, x[..., k:]], axis=-1)
    return ACTIVATIONS[layer.params.activation](tf, x)


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


def _build_maxpool(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    p = layer.params
    x = inputs[0]
    strides = (p.stride_y, p.stride_x)
    mode = _padding_mode(layer, p.size, strides, p.pad_before)
    if mode == "EXPLICIT":
        x = _explicit_pad(tf, x, layer, p.size, strides, p.pad_before, -FLT_MAX)
        mode = "VALID"
    return tf.nn.max_pool2d(x, p.size, [1, p.stride_y, p.stride_x, 1], mode)


def window_counts(layer: Layer) -> np.ndarray:
    """(H_out, W_out) float32: how many real (unpadded) pixels each pooling window covers."""
    p = layer.params
    (h, w, _), (oh, ow, _) = layer.in_shapes[0], layer.out_shape

    def axis(n_in: int, n_out: int, s: int) -> np.ndarray:
        start = np.arange(n_out) * s - p.pad_before
        return (np.minimum(start + p.size, n_in) - np.maximum(start, 0)).astype(np.float32)

    return np.outer(axis(h, oh, p.stride_y), axis(w, ow, p.stride_x))


def _build_local_avgpool(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    """darknet averages only the pixels inside the image (padding is not counted)."""
    p = layer.params
    x = inputs[0]
    strides = (p.stride_y, p.stride_x)
    if _padding_mode(layer, p.size, strides, p.pad_before) == "VALID":
        return tf.nn.avg_pool2d(x, p.size, [1, p.stride_y, p.stride_x, 1], "VALID")
    x = _explicit_pad(tf, x, layer, p.size, strides, p.pad_before, 0.0)
    mean = tf.nn.avg_pool2d(x, p.size, [1, p.stride_y, p.stride_x, 1], "VALID")
    fix = (p.size * p.size) / window_counts(layer)
    return mean * fix[None, :, :, None]


def _build_avgpool(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    return tf.reduce_mean(inputs[0], axis=[1, 2], keepdims=True)


def _build_identity(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    """[dropout], [contrastive] and every head: the raw tensor (heads decode in numpy)."""
    return inputs[0]


def _build_activation(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    return ACTIVATIONS[layer.params.activation](tf, inputs[0])


def _build_upsample(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    p = layer.params
    h, w_, _ = layer.out_shape
    x = tf.compat.v1.image.resize_nearest_neighbor(
        inputs[0], (h, w_), align_corners=False, half_pixel_centers=False
    )
    return x * p.scale if p.scale != 1.0 else x


def _build_scale(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    """[scale_channels] ((1, 1, C) or (H, W, 1) broadcast) and [sam] (same shape): the
    ``from`` layer's output times this layer's input."""
    return ACTIVATIONS[layer.params.activation](tf, inputs[1] * inputs[0])


def _build_reorg3d(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    """darknet [reorg3d]: out[y, x, (dy * s + dx) * C + c] = in[y * s + dy, x * s + dx, c],
    TF's space_to_depth (reverse=1: depth_to_space)."""
    s = layer.params.stride
    if layer.params.reverse:
        return tf.nn.depth_to_space(inputs[0], s)
    return tf.nn.space_to_depth(inputs[0], s)


def _build_reorg_old(tf, layer: Layer, inputs: list, w: None, opts: BuildOptions = PLAIN):
    """darknet's original [reorg] (YOLOv2): it reads its (C, H, W) input buffer as
    (C / s^2, H * s, W * s), applies space_to_depth to that, and hands the result's
    (C, H, W) buffer on as (C * s^2, H / s, W / s). The same moves on NCHW reshapes."""
    s = layer.params.stride
    (h, w, c), (oh, ow, oc) = layer.in_shapes[0], layer.out_shape
    x = tf.transpose(inputs[0], [0, 3, 1, 2])  # NCHW
    x = tf.reshape(x, [1, c // (s * s), h * s, w * s])
    x = tf.nn.space_to_depth(tf.transpose(x, [0, 2, 3, 1]), s)  # (1, h, w, c)
    x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [1, oc, oh, ow])
    return tf.transpose(x, [0, 2, 3, 1])


REGISTRY: dict[str, Handler] = {
    "convolutional": Handler(_load_conv, _build_conv),
    "crnn": Handler(_load_crnn, _build_crnn),
    "route": Handler(_no_weights, _build_route),
    "shortcut": Handler(_load_shortcut, _build_shortcut),
    "maxpool": Handler(_no_weights, _build_maxpool),
    "local_avgpool": Handler(_no_weights, _build_local_avgpool),
    "avgpool": Handler(_no_weights, _build_avgpool),
    "dropout": Handler(_no_weights, _build_identity),
    "contrastive": Handler(_no_weights, _build_identity),
    "activation": Handler(_no_weights, _build_activation),
    "upsample": Handler(_no_weights, _build_upsample),
    "scale_channels": Handler(_no_weights, _build_scale),
    "sam": Handler(_no_weights, _build_scale),
    "reorg3d": Handler(_no_weights, _build_reorg3d),
    "reorg": Handler(_no_weights, _build_reorg_old),
    "yolo": Handler(_no_weights, _build_identity),
    "Gaussian_yolo": Handler(_no_weights, _build_identity),
    "region": Handler(_no_weights, _build_identity),
}


def load_weights(network: Network, weights_path: str | Path) -> tuple[Header, dict[int, Weights]]:
    """Read every weighted layer via :data:`REGISTRY`; checks that every float was consumed."""
    reader = WeightsReader(weights_path, network)
    arrays: dict[int, Weights] = {}
    for layer in network.layers:
        w = REGISTRY[layer.kind].load(reader, layer)
        share = getattr(layer.params, "share_index", None)
        if share is not None:  # a conv using another conv's arrays (checked by the parser)
            w = arrays[share]
            if w["kernel"].shape != _shared_shape(layer):
                raise ConversionError(f"{_where(layer)}: share_index={share} has kernel "
                                      f"{w['kernel'].shape}, this layer needs "
                                      f"{_shared_shape(layer)}")
        if w is not None:
            arrays[layer.index] = w
    reader.finish()
    return reader.header, arrays


def _shared_shape(layer: Layer) -> tuple[int, ...]:
    """The TF kernel shape this conv needs (see :func:`_load_conv`)."""
    o, i, kh, kw = dict(conv_layout(layer))["kernel_oihw"]
    return (kh, kw, o, i) if _is_depthwise(layer) else (kh, kw, i, o)


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
