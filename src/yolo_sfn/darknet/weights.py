"""Darknet ``.weights`` files: header, sequential float32 reader with a consumption check, and a
deterministic random-weights writer for tests and benchmarks.

File layout (little endian)::

    int32 major, int32 minor, int32 revision
    seen: int64 if major * 10 + minor >= 2 and major < 1000 else int32   (darknet parser.c)
    float32 ... every weighted layer in cfg order

Darknet's weight order for one ``[convolutional]`` layer, documented here once and used by both
the reader and the writer (:func:`conv_layout`)::

    bias (out,)                        -- BN beta when batch_normalize=1
    [gamma (out,), mean (out,), variance (out,)]   -- only when batch_normalize=1
    kernel (out, in / groups, h, w)    -- OIHW

A conv with ``share_index`` reads nothing (it uses that layer's arrays). A ``[shortcut]`` with
``weights_type`` reads ``weights ((n + 1) * k,)``: one weight per input (the previous layer
first, then each ``from``), ``k = 1`` (per_feature) or ``C`` (per_channel, channel-major per
input). No other section we convert has weights.

Darknet's batch norm is ``(x - mean) / (sqrt(variance) + 1e-6) * gamma + beta``
(:data:`BN_EPSILON`; note: added to the *standard deviation*).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_sfn.darknet.cfg import ConvParams, Layer, Network
from yolo_sfn.errors import InputFileError, WeightsError

BN_EPSILON = 1e-6
WEIGHTED_KINDS = ("convolutional", "shortcut", "crnn")


@dataclass(frozen=True)
class Header:
    major: int
    minor: int
    revision: int
    seen: int

    @property
    def seen_is_int64(self) -> bool:
        return seen_is_int64(self.major, self.minor)

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_int64 else 4)


def seen_is_int64(major: int, minor: int) -> bool:
    """darknet: ``(major * 10 + minor) >= 2 && major < 1000 && minor < 1000`` -> 64-bit seen."""
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def conv_parts(c_in: int, out: int, size: int, groups: int, bn: bool,
               prefix: str = "") -> list[tuple[str, tuple[int, ...]]]:
    """One convolution's arrays in file order (see module docstring)."""
    parts = [(prefix + "bias", (out,))]
    if bn:
        parts += [(prefix + "gamma", (out,)), (prefix + "mean", (out,)),
                  (prefix + "variance", (out,))]
    parts.append((prefix + "kernel_oihw", (out, c_in // groups, size, size)))
    return parts


def conv_layout(layer: Layer) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, shape), ...]`` in file order for one conv layer (see module docstring)."""
    p: ConvParams = layer.params
    return conv_parts(layer.in_shapes[0][2], p.filters, p.size, p.groups, p.batch_normalize)


def crnn_layout(layer: Layer) -> list[tuple[str, tuple[int, ...]]]:
    """The three convolutions of a ``[crnn]``, names prefixed ``input.``/``self.``/``output.``."""
    p = layer.params
    return [part for name, ci, f in p.convs(layer.in_shapes[0][2])
            for part in conv_parts(ci, f, p.size, p.groups, p.batch_normalize, name + ".")]


def shortcut_layout(layer: Layer) -> list[tuple[str, tuple[int, ...]]]:
    """``[("weights", (n_inputs * k,))]`` for a weighted shortcut, else ``[]``."""
    p = layer.params
    if p.weights_type == "none":
        return []
    k = layer.out_shape[2] if p.weights_type == "per_channel" else 1
    return [("weights", (len(layer.inputs) * k,))]


def layer_layout(layer: Layer) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, shape), ...]`` this layer reads from the weights file, in file order."""
    if layer.kind == "convolutional":
        return [] if layer.params.share_index is not None else conv_layout(layer)
    if layer.kind == "shortcut":
        return shortcut_layout(layer)
    if layer.kind == "crnn":
        return crnn_layout(layer)
    return []


def layout(network: Network) -> list[tuple[Layer, list[tuple[str, tuple[int, ...]]]]]:
    """Every layer that reads weights, with its :func:`layer_layout`, in file order."""
    return [(la, parts) for la in network.layers if (parts := layer_layout(la))]


def expected_floats(network: Network) -> int:
    return sum(int(np.prod(shape)) for _, parts in layout(network) for _, shape in parts)


class WeightsReader:
    """Sequential float32 reader over one ``.weights`` file.

    ``take(shape)`` hands out the next ``prod(shape)`` floats; :meth:`finish` fails if any were
    left over. Reading past the end is a :class:`WeightsError` naming expected and actual sizes.
    """

    def __init__(self, path: str | Path, network: Network):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise InputFileError(f"{self.path}: weights file not found") from None
        except OSError as e:
            raise InputFileError(f"{self.path}: cannot read weights ({e.strerror})") from None
        self.header = read_header(data, self.path)
        body = data[self.header.nbytes :]
        self.expected = expected_floats(network)
        if len(body) % 4:
            raise WeightsError(
                f"{self.path}: body is {len(body)} bytes, not a whole number of float32 values"
            )
        self._floats = np.frombuffer(body, dtype="<f4")
        self._pos = 0
        if self._floats.size < self.expected:
            raise WeightsError(
                f"{self.path}: too short for {network.path}: expected {self.expected} floats "
                f"({self.header.nbytes + 4 * self.expected} bytes), got {self._floats.size} floats "
                f"({len(data)} bytes)"
            )
        if self._floats.size > self.expected:  # fail before reading garbage into layers
            self._too_long(self._floats.size - self.expected, f" for {network.path}")

    def _too_long(self, left: int, cfg: str = "") -> None:
        raise WeightsError(
            f"{self.path}: too long{cfg}: expected {self.expected} floats "
            f"({self.header.nbytes + 4 * self.expected} bytes), got {self._floats.size} floats "
            f"({self.header.nbytes + 4 * self._floats.size} bytes), {left} left over"
        )

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        if self._pos + n > self._floats.size:  # unreachable after the size check; kept as a guard
            raise WeightsError(f"{self.path}: ran out of weights at float {self._pos}")
        out = self._floats[self._pos : self._pos + n].reshape(shape)
        self._pos += n
        return out

    def finish(self) -> None:
        """Every float consumed? (The constructor already compared sizes; this guards readers
        that skipped a layer.)"""
        if self._pos != self._floats.size:
            self._too_long(self._floats.size - self._pos)


def read_header(data: bytes, path: str | Path = "<weights>") -> Header:
    if len(data) < 12:
        raise WeightsError(f"{path}: too short for a darknet header ({len(data)} bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data[:12], dtype="<i4"))
    wide = seen_is_int64(major, minor)
    need = 20 if wide else 16
    if len(data) < need:
        raise WeightsError(
            f"{path}: too short for a darknet header ({len(data)} bytes, need {need})"
        )
    seen = int(np.frombuffer(data[12:need], dtype="<i8" if wide else "<i4")[0])
    return Header(major, minor, revision, seen)


def read_conv_weights(reader: WeightsReader, layer: Layer) -> dict[str, np.ndarray]:
    """Next conv layer's arrays by name: bias, [gamma, mean, variance], kernel_oihw."""
    return {name: reader.take(shape) for name, shape in conv_layout(layer)}


def read_layer_weights(reader: WeightsReader, layer: Layer) -> dict[str, np.ndarray]:
    """Next arrays of any layer by name (:func:`layer_layout`); ``{}`` when it reads none."""
    return {name: reader.take(shape) for name, shape in layer_layout(layer)}


def write_weights_file(
    path: str | Path,
    arrays: list[np.ndarray],
    *,
    major: int = 0,
    minor: int = 2,
    revision: int = 0,
    seen: int = 0,
) -> Path:
    """Write a header plus ``arrays`` (flattened float32, in the given order)."""
    wide = seen_is_int64(major, minor)
    p = Path(path)
    with p.open("wb") as f:
        f.write(np.array([major, minor, revision], dtype="<i4").tobytes())
        f.write(np.array([seen], dtype="<i8" if wide else "<i4").tobytes())
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return p


def _random_array(rng, name: str, shape: tuple[int, ...], bn: bool, small_gamma: bool):
    """One conv array (see :func:`random_weights`); ``name`` without its ``input.`` prefix."""
    if name == "bias":
        return rng.normal(0.0, 0.1 if bn else 0.5, shape)
    if name == "gamma":
        return rng.uniform(*((0.05, 0.2) if small_gamma else (0.5, 1.0)), shape)
    if name == "mean":
        return rng.normal(0.0, 0.1, shape)
    if name == "variance":
        return rng.uniform(0.5, 1.5, shape)
    fan_in = int(np.prod(shape[1:]))
    scale = np.sqrt(2.0 / fan_in) if bn else 0.5 * np.sqrt(1.0 / fan_in)
    return rng.normal(0.0, scale, shape)


def random_weights(network: Network, seed: int = 0) -> list[np.ndarray]:
    """Deterministic random arrays in darknet file order, scaled so activations stay O(1).

    Kernels: He-normal ``N(0, 2 / fan_in)``; BN: gamma ~ U(0.5, 1.0), beta/mean ~ N(0, 0.1),
    variance ~ U(0.5, 1.5). The last conv of every residual branch (the layer just before a
    ``[shortcut]``) gets gamma ~ U(0.05, 0.2), so 23 residual adds (yolov3) do not blow up.
    Layers without BN (the heads) get a smaller kernel (x0.5) and bias ~ N(0, 0.5), so head
    logits spread over a useful range without overflowing exp().
    """
    rng = np.random.default_rng(seed)
    branch_ends = {layer.index - 1 for layer in network.layers if layer.kind == "shortcut"}
    out: list[np.ndarray] = []
    for layer, parts in layout(network):
        if layer.kind == "shortcut":  # around 1 / n_inputs, so the sum stays O(1)
            n = int(parts[0][1][0])
            out.append(rng.uniform(0.5, 1.5, n) / len(layer.inputs))
            continue
        bn = layer.params.batch_normalize
        small_gamma = layer.index in branch_ends
        for name, shape in parts:
            out.append(_random_array(rng, name.rsplit(".", 1)[-1], shape, bn, small_gamma))
    return [a.astype(np.float32) for a in out]


def write_random_weights(network: Network, path: str | Path, seed: int = 0) -> Path:
    """Random darknet weights for ``network`` (header version 0.2, int64 ``seen``)."""
    return write_weights_file(path, random_weights(network, seed), major=0, minor=2)
