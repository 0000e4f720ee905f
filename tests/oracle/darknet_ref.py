"""An independent darknet forward pass in numpy, written from darknet's layer definitions
(AlexeyAB/darknet ``src/*_layer.c``), for cfgs OpenCV's importer cannot run.

It shares nothing with the converter but the parsed layer list (sections, options, resolved
indices): it reads the ``.weights`` file itself, keeps darknet's own CHW layout, applies batch
norm unfolded (``(x - mean) / (sqrt(var) + 1e-6) * gamma + beta``), convolves with im2col in
float64, and decodes heads with darknet's formulas into OpenCV-style rows
``cx, cy, w, h, objectness, class scores`` (row order ``(y * W + x) * A + a``, heads
concatenated), so its output compares 1:1 with both OpenCV and ``yolo_sfn.core.decode``.

Semantics, layer by layer (darknet function in brackets):
  crnn           [forward_crnn_layer] one step from the zero state (calloc'd l.state)
  convolutional  [forward_convolutional_layer] pad = (size // 2 if pad else padding) * dilation,
                 groups split channels in blocks; xnor: input -> x > 0 ? 1 : -1 and weights
                 -> sign(w) * mean|w| per filter; binary: weights only
  maxpool        [forward_maxpool_layer] window start -padding // 2, pixels outside ignored
  local_avgpool  [forward_local_avgpool_layer] mean over the pixels inside the image
  avgpool        [forward_avgpool_layer] global mean
  route          [forward_route_layer] chunk group_id of each input, concatenated
  shortcut       [shortcut_multilayer_cpu] out = in (* w0); out[:k] += from[:k] (* wi),
                 k = min(channels); weights normalized by relu / softmax (+ 0.0001)
  upsample       [upsample_cpu] nearest, times scale
  scale_channels [forward_scale_channels_layer] from * input broadcast (1x1xC or HxWx1)
  sam            [forward_sam_layer] from * input
  reorg3d / reorg [reorg_cpu] (see ``_reorg_cpu``: the darknet loop, transcribed)
  dropout, contrastive: identity
  heads          [get_yolo_box, get_region_box, get_gaussian_yolo_box, forward_*_layer]
"""

from __future__ import annotations

import numpy as np

from yolo_sfn.darknet.cfg import NETWORK_INPUT, Layer, Network

_ACT = {  # darknet activations.h / activations.c, one by one
    "linear": lambda x: x,
    "leaky": lambda x: np.where(x > 0, x, 0.1 * x),
    "revleaky": lambda x: np.where(x > 0, x, 0.1 * x),
    "relu": lambda x: x * (x > 0),
    "logistic": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
    "hard_mish": lambda x: np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0.0)),
    "loggy": lambda x: 2.0 / (1.0 + np.exp(-x)) - 1,
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (np.exp(np.minimum(x, 0)) - 1),
    "selu": lambda x: (x >= 0) * 1.0507 * x
    + (x < 0) * 1.0507 * 1.6732 * (np.exp(np.minimum(x, 0)) - 1),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x**3)),
    "relie": lambda x: np.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "tanh": lambda x: 2 / (1 + np.exp(-2 * x)) - 1,
    "hardtan": lambda x: np.clip(x, -1, 1),
    "lhtan": lambda x: np.where(x < 0, 0.001 * x, np.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "plse": lambda x: np.where(x < -4, 0.01 * (x + 4),
                               np.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
}


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    return _ACT[kind](x)


class _Floats:
    """darknet's weights file: 3 int32 version, seen (int64 if major*10+minor >= 2), floats."""

    def __init__(self, path):
        data = open(path, "rb").read()  # noqa: SIM115
        major, minor, _ = np.frombuffer(data[:12], "<i4")
        start = 20 if major * 10 + minor >= 2 else 16
        self.f = np.frombuffer(data[start:], "<f4").astype(np.float64)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        out = self.f[self.pos : self.pos + n]
        assert out.size == n, "weights file too short"
        self.pos += n
        return out


def _im2col(x: np.ndarray, k: int, sy: int, sx: int, pad: int, dil: int, oh: int, ow: int):
    """x (C, H, W) -> (C * k * k, oh * ow) like darknet's im2col_cpu_ext (zeros outside)."""
    c, h, w = x.shape
    ke = dil * (k - 1) + 1
    xp = np.zeros((c, h + 2 * pad + ke, w + 2 * pad + ke))
    xp[:, pad : pad + h, pad : pad + w] = x
    cols = np.empty((c, k, k, oh, ow))
    for i in range(k):
        for j in range(k):
            y0, x0 = i * dil, j * dil
            cols[:, i, j] = xp[:, y0 : y0 + sy * oh : sy, x0 : x0 + sx * ow : sx]
    return cols.reshape(c * k * k, oh * ow)


def _conv(layer: Layer, x: np.ndarray, w: dict) -> np.ndarray:
    p = layer.params
    oh, ow, n = layer.out_shape
    if p.xnor:
        x = np.where(x > 0, 1.0, -1.0)
    g = p.groups
    c = x.shape[0]
    kernel = w["kernel"]
    if p.xnor or p.binary:
        mean = np.abs(kernel).reshape(n, -1).mean(axis=1)
        kernel = np.where(kernel > 0, 1.0, -1.0) * mean[:, None, None, None]
    out = np.empty((n, oh * ow))
    pad = (p.size // 2 if p.pad else p.padding) * p.dilation
    for j in range(g):
        cols = _im2col(x[j * c // g : (j + 1) * c // g], p.size, p.stride_y, p.stride_x, pad,
                       p.dilation, oh, ow)
        out[j * n // g : (j + 1) * n // g] = kernel[j * n // g : (j + 1) * n // g].reshape(
            n // g, -1) @ cols
    if p.batch_normalize:
        out = (out - w["mean"][:, None]) / (np.sqrt(w["variance"][:, None]) + 1e-6)
        out = out * w["gamma"][:, None]
    out = out + w["bias"][:, None]
    return _act(out.reshape(n, oh, ow), p.activation)


def _pool(layer: Layer, x: np.ndarray, avg: bool) -> np.ndarray:
    p = layer.params
    oh, ow, c = layer.out_shape
    _, h, w = x.shape
    out = np.empty((c, oh, ow))
    off = -(p.padding // 2)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = off + i * p.stride_y, off + j * p.stride_x
            win = x[:, max(y0, 0) : min(y0 + p.size, h), max(x0, 0) : min(x0 + p.size, w)]
            win = win.reshape(c, -1)
            out[:, i, j] = win.mean(axis=1) if avg else win.max(axis=1)
    return out


def _shortcut(layer: Layer, ins: list[np.ndarray], w: dict | None) -> np.ndarray:
    p = layer.params
    c = ins[0].shape[0]
    n = len(ins)
    if w is None:
        mult = np.ones((n, c))
    else:
        raw = w["weights"].reshape(n, -1)
        mult = np.broadcast_to(raw, (n, c)).copy()
        if p.weights_normalization == "relu":
            r = np.maximum(mult, 0)
            mult = r / (0.0001 + r.sum(axis=0))
        elif p.weights_normalization == "softmax":
            e = np.exp(mult - mult.max(axis=0))
            mult = e / (0.0001 + e.sum(axis=0))
    out = ins[0] * mult[0][:, None, None]
    for i, other in enumerate(ins[1:], 1):
        k = min(c, other.shape[0])
        out[:k] += other[:k] * mult[i][:k, None, None]
    return _act(out, p.activation)


def _reorg_cpu(x: np.ndarray, out_w: int, out_h: int, out_c: int, stride: int) -> np.ndarray:
    """darknet ``reorg_cpu(..., forward=0)`` on a flat buffer: out[in_index] = x[out_index]."""
    in_c = out_c // (stride * stride)
    k, j, i = np.meshgrid(np.arange(out_c), np.arange(out_h), np.arange(out_w), indexing="ij")
    c2, offset = k % in_c, k // in_c
    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
    src = w2 + out_w * stride * (h2 + out_h * stride * c2)
    return x.reshape(-1)[src.reshape(-1)]


def _reorg(layer: Layer, x: np.ndarray) -> np.ndarray:
    p = layer.params
    (h, w, c), (oh, ow, oc) = layer.in_shapes[0], layer.out_shape
    if layer.kind == "reorg3d":  # make_reorg_layer: reorg_cpu(input, out_w, out_h, out_c)
        assert not p.reverse
        flat = _reorg_cpu(x, ow, oh, oc, p.stride)
    else:  # reorg_old: reorg_cpu(input, w, h, c), output read as (oc, oh, ow)
        flat = _reorg_cpu(x, w, h, c, p.stride)
    return flat.reshape(oc, oh, ow)


def _upsample(layer: Layer, x: np.ndarray) -> np.ndarray:
    s = layer.params.stride
    return np.repeat(np.repeat(x, s, axis=1), s, axis=2) * layer.params.scale


def _read_conv(reader: _Floats, c: int, n: int, size: int, groups: int, bn: bool) -> dict:
    w = {"bias": reader.take(n)}
    if bn:
        w.update(gamma=reader.take(n), mean=reader.take(n), variance=reader.take(n))
    w["kernel"] = reader.take(n * (c // groups) * size * size).reshape(n, c // groups, size, size)
    return w


def _conv_chw(x, w, size, stride, pad, groups, bn, act, oh, ow) -> np.ndarray:
    n, c = w["kernel"].shape[0], x.shape[0]
    out = np.empty((n, oh * ow))
    for j in range(groups):
        cols = _im2col(x[j * c // groups : (j + 1) * c // groups], size, stride, stride, pad, 1,
                       oh, ow)
        out[j * n // groups : (j + 1) * n // groups] = w["kernel"][
            j * n // groups : (j + 1) * n // groups].reshape(n // groups, -1) @ cols
    if bn:
        out = (out - w["mean"][:, None]) / (np.sqrt(w["variance"][:, None]) + 1e-6)
        out = out * w["gamma"][:, None]
    return _act((out + w["bias"][:, None]).reshape(n, oh, ow), act)


def _crnn(layer: Layer, x: np.ndarray, w: dict) -> np.ndarray:
    """forward_crnn_layer, one step, state starting at zero (calloc): state = 0 + input(x) +
    self(state); out = output(state)."""
    p = layer.params
    oh, ow, _ = layer.out_shape
    pad = p.size // 2 if p.pad else p.padding
    args = (p.size, p.stride, pad, p.groups, p.batch_normalize, p.activation, oh, ow)
    state0 = np.zeros((p.hidden, oh, ow))
    state = _conv_chw(x, w["input"], *args) + _conv_chw(state0, w["self"], *args)
    return _conv_chw(state, w["output"], *args)


def _load(reader: _Floats, layer: Layer) -> dict | None:
    p = layer.params
    if layer.kind == "crnn":
        return {name: _read_conv(reader, ci, f, p.size, p.groups, p.batch_normalize)
                for name, ci, f in p.convs(layer.in_shapes[0][2])}
    if layer.kind == "convolutional" and p.share_index is None:
        n, c = p.filters, layer.in_shapes[0][2]
        w = {"bias": reader.take(n)}
        if p.batch_normalize:
            w.update(gamma=reader.take(n), mean=reader.take(n), variance=reader.take(n))
        w["kernel"] = reader.take(n * (c // p.groups) * p.size * p.size).reshape(
            n, c // p.groups, p.size, p.size)
        return w
    if layer.kind == "shortcut" and p.weights_type != "none":
        k = layer.out_shape[2] if p.weights_type == "per_channel" else 1
        return {"weights": reader.take(len(layer.inputs) * k)}
    return None


def forward(network: Network, weights_path, image_chw: np.ndarray) -> list[np.ndarray]:
    """image (C, H, W) float in [0, 1] -> raw head tensors (C_head, h, w) in head order."""
    reader = _Floats(weights_path)
    weights = {}
    for layer in network.layers:
        w = _load(reader, layer)
        if w is not None:
            weights[layer.index] = w
        elif layer.kind == "convolutional":
            weights[layer.index] = weights[layer.params.share_index]
    assert reader.pos == reader.f.size, "weights file too long"
    outs = {NETWORK_INPUT: image_chw.astype(np.float64)}
    for layer in network.layers:
        ins = [outs[i] for i in layer.inputs]
        outs[layer.index] = _run(layer, ins, weights.get(layer.index))
        assert outs[layer.index].shape == (layer.out_shape[2], *layer.out_shape[:2]), layer
    return [outs[i] for i in network.yolo_indices]


def _run(layer: Layer, ins: list[np.ndarray], w: dict | None) -> np.ndarray:
    kind, p, x = layer.kind, layer.params, ins[0]
    if kind == "convolutional":
        return _conv(layer, x, w)
    if kind == "crnn":
        return _crnn(layer, x, w)
    if kind == "maxpool":
        return _pool(layer, x, avg=False)
    if kind == "local_avgpool":
        return _pool(layer, x, avg=True)
    if kind == "avgpool":
        return x.mean(axis=(1, 2), keepdims=True)
    if kind == "route":
        parts = [a[p.group_id * a.shape[0] // p.groups : (p.group_id + 1) * a.shape[0]
                   // p.groups] for a in ins]
        return np.concatenate(parts, axis=0)
    if kind == "shortcut":
        return _shortcut(layer, ins, w)
    if kind == "upsample":
        return _upsample(layer, x)
    if kind in ("scale_channels", "sam"):
        return _act(ins[1] * x, p.activation)
    if kind in ("reorg3d", "reorg"):
        return _reorg(layer, x)
    if kind == "activation":
        return _act(x, p.activation)
    return x  # dropout, contrastive, heads (raw)


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode(network: Network, heads: list[np.ndarray]) -> np.ndarray:
    """Raw heads -> OpenCV-style rows (N, 5 + C): cx, cy, w, h (normalized), obj,
    obj * class probability (Gaussian_yolo: times 1 - mean uncertainty)."""
    net_h, net_w, _ = network.input_shape
    rows = []
    for layer, t in zip(network.yolo_layers, heads, strict=True):
        p = layer.params
        gh, gw, _ = layer.out_shape
        gauss = layer.kind == "Gaussian_yolo"
        per = p.classes + (9 if gauss else 5)
        n = t.shape[0] // per
        t = t.reshape(n, per, gh, gw).transpose(2, 3, 0, 1)  # (gh, gw, A, per)
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        ys, xs = ys[:, :, None], xs[:, :, None]
        out = np.empty((gh, gw, n, 5 + p.classes))
        if layer.kind == "region":
            aw, ah = (np.array([a[i] for a in p.masked_anchors]) for i in (0, 1))
            out[..., 0] = (xs + _sig(t[..., 0])) / gw
            out[..., 1] = (ys + _sig(t[..., 1])) / gh
            out[..., 2] = np.exp(t[..., 2]) * aw / gw
            out[..., 3] = np.exp(t[..., 3]) * ah / gh
            obj = _sig(t[..., 4])
            c = t[..., 5:]
            if p.softmax:
                c = np.exp(c - c.max(axis=-1, keepdims=True))
                c = c / c.sum(axis=-1, keepdims=True)
        else:
            s = p.scale_x_y
            aw, ah = (np.array([a[i] for a in p.masked_anchors]) for i in (0, 1))
            tx, ty, tw, th = (t[..., k] for k in ((0, 2, 4, 6) if gauss else (0, 1, 2, 3)))
            to, tc = (t[..., 8], t[..., 9:]) if gauss else (t[..., 4], t[..., 5:])
            if p.new_coords:  # the conv already applied the logistic
                fx, fy, fw, fh, obj, c = tx, ty, (2 * tw) ** 2, (2 * th) ** 2, to, tc
            else:
                fx, fy, fw, fh, obj, c = _sig(tx), _sig(ty), np.exp(tw), np.exp(th), _sig(to), \
                    _sig(tc)
            out[..., 0] = (xs + fx * s - (s - 1) / 2) / gw
            out[..., 1] = (ys + fy * s - (s - 1) / 2) / gh
            out[..., 2] = fw * aw / net_w
            out[..., 3] = fh * ah / net_h
            if gauss:
                c = c * (1 - _sig(t[..., [1, 3, 5, 7]]).mean(axis=-1, keepdims=True))
        out[..., 4] = obj
        out[..., 5:] = obj[..., None] * c
        rows.append(out.reshape(-1, 5 + p.classes))
    return np.concatenate(rows).astype(np.float32)
