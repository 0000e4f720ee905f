"""Table-driven darknet ``.cfg`` parser -> immutable :class:`Network` description.

Three steps, each driven by a table:

1. read the file into ``(section, line, {option: (raw value, line)})`` blocks (darknet strips
   every blank from a line, ``#``/``;`` start a comment);
2. check each block against :data:`SCHEMAS`: per section, every supported option with its darknet
   default spelled out (as in darknet ``parser.c`` / OpenCV ``darknet_io.cpp``) plus the
   training-only options we accept and ignore by name. Anything else is a :class:`CfgError`
   naming the file, the line and the section/option;
3. resolve ``route``/``shortcut`` indices to absolute layer indices and track every layer's
   output shape ``(H, W, C)`` with :data:`SHAPES`.

Layer indices are darknet's: the first section after ``[net]`` is layer 0; index ``-1`` in
``Layer.inputs`` means the network input. Nothing is mutated after :func:`parse_cfg` returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from yolo_sfn.errors import CfgError, InputFileError

NETWORK_INPUT = -1
ACTIVATIONS = ("leaky", "mish", "linear", "logistic", "relu", "swish")
NMS_KINDS = {"default": "greedy", "greedynms": "greedy", "diounms": "diou"}


# --- value parsers (raise ValueError with a short reason) ------------------------------------
def _int(s: str) -> int:
    return int(s)


def _float(s: str) -> float:
    return float(s)


def _bool(s: str) -> bool:
    v = int(s)
    if v not in (0, 1):
        raise ValueError("expected 0 or 1")
    return bool(v)


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(",") if x != "")


def _floats(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in s.split(",") if x != "")


def _activation(s: str) -> str:
    if s not in ACTIVATIONS:
        raise ValueError(f"unsupported activation (supported: {', '.join(ACTIVATIONS)})")
    return s


def _nms_kind(s: str) -> str:
    if s not in NMS_KINDS:
        raise ValueError(f"unsupported nms_kind (supported: {', '.join(NMS_KINDS)})")
    return NMS_KINDS[s]


# --- per-section parameter records (field name == cfg option name, ``from`` -> ``from_``) ----
@dataclass(frozen=True)
class NetParams:
    width: int
    height: int
    channels: int
    letter_box: bool


@dataclass(frozen=True)
class ConvParams:
    filters: int
    size: int
    stride: int
    pad: bool
    padding: int
    groups: int
    batch_normalize: bool
    activation: str

    @property
    def pad_px(self) -> int:
        """Zero padding per side: ``size // 2`` if ``pad=1`` (darknet), else ``padding``."""
        return self.size // 2 if self.pad else self.padding


@dataclass(frozen=True)
class RouteParams:
    layers: tuple[int, ...]  # absolute after parsing
    groups: int
    group_id: int


@dataclass(frozen=True)
class ShortcutParams:
    from_: tuple[int, ...]  # absolute after parsing
    activation: str


@dataclass(frozen=True)
class MaxPoolParams:
    size: int
    stride: int
    padding: int  # total (both sides); darknet puts padding // 2 on the top/left

    @property
    def pad_before(self) -> int:
        return self.padding // 2


@dataclass(frozen=True)
class UpsampleParams:
    stride: int
    scale: float


@dataclass(frozen=True)
class YoloParams:
    mask: tuple[int, ...]
    anchors: tuple[float, ...]  # flat w0, h0, w1, h1, ... (all ``num`` anchors)
    classes: int
    num: int
    scale_x_y: float
    new_coords: bool
    nms_kind: str  # greedy | diou
    beta_nms: float
    thresh: float

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        """The anchors this head uses, ``((w, h), ...)`` in input pixels."""
        return tuple((self.anchors[2 * m], self.anchors[2 * m + 1]) for m in self.mask)


# --- schema: section -> (record type, {option: (parser, default)}, ignored options) -------
_REQUIRED = object()  # marker: no darknet default we are willing to assume

# [net] training / augmentation options darknet reads but inference never uses.
_NET_IGNORED = frozenset(
    [
        "batch",
        "subdivisions",
        "momentum",
        "decay",
        "angle",
        "saturation",
        "exposure",
        "hue",
        "learning_rate",
        "burn_in",
        "max_batches",
        "policy",
        "steps",
        "scales",
        "mosaic",
        "cutmix",
        "mixup",
        "blur",
        "flip",
        "gaussian_noise",
        "power",
        "max_crop",
        "min_crop",
        "aspect",
        "track",
        "time_steps",
        "adam",
        "B1",
        "B2",
        "eps",
        "label_smoothing_eps",
        "mosaic_bound",
        "contrastive",
        "unsupervised",
        "dynamic_minibatch",
        "optimized_memory",
        "workspace_size_limit_MB",
        "inputs",
        "max_chart_loss",
        "step",
        "gamma",
        "seq_scales",
    ]
)
_YOLO_IGNORED = frozenset(
    [
        "jitter",
        "ignore_thresh",
        "truth_thresh",
        "random",
        "resize",
        "iou_normalizer",
        "cls_normalizer",
        "obj_normalizer",
        "delta_normalizer",
        "iou_loss",
        "iou_thresh",
        "max_delta",
        "focal_loss",
        "label_smooth_eps",
        "counters_per_class",
        "objectness_smooth",
        "embedding_layer",
        "track_history_size",
        "sim_thresh",
        "dets_for_track",
        "dets_for_show",
        "map",
        "iou_thresh_kind",
        "max",
    ]
)


@dataclass(frozen=True)
class SectionSchema:
    record: type
    options: dict[str, tuple[Callable[[str], Any], Any]]
    ignored: frozenset[str] = frozenset()


SCHEMAS: dict[str, SectionSchema] = {
    "net": SectionSchema(
        NetParams,
        {
            "width": (_int, 416),
            "height": (_int, 416),
            "channels": (_int, 3),
            "letter_box": (_bool, False),
        },
        _NET_IGNORED,
    ),
    "convolutional": SectionSchema(
        ConvParams,
        {
            "filters": (_int, 1),
            "size": (_int, 1),
            "stride": (_int, 1),
            "pad": (_bool, False),
            "padding": (_int, 0),
            "groups": (_int, 1),
            "batch_normalize": (_bool, False),
            "activation": (_activation, "logistic"),
        },
    ),
    "route": SectionSchema(
        RouteParams,
        {"layers": (_ints, _REQUIRED), "groups": (_int, 1), "group_id": (_int, 0)},
    ),
    "shortcut": SectionSchema(
        ShortcutParams,
        {"from": (_ints, _REQUIRED), "activation": (_activation, "linear")},
    ),
    "maxpool": SectionSchema(
        MaxPoolParams,
        # size defaults to stride, padding to size - 1: resolved in _maxpool_defaults
        {"size": (_int, None), "stride": (_int, 1), "padding": (_int, None)},
    ),
    "upsample": SectionSchema(UpsampleParams, {"stride": (_int, 2), "scale": (_float, 1.0)}),
    "yolo": SectionSchema(
        YoloParams,
        {
            "mask": (_ints, ()),
            "anchors": (_floats, ()),
            "classes": (_int, 20),
            "num": (_int, 1),
            "scale_x_y": (_float, 1.0),
            "new_coords": (_bool, False),
            "nms_kind": (_nms_kind, "greedy"),
            "beta_nms": (_float, 0.6),
            "thresh": (_float, 0.2),
        },
        _YOLO_IGNORED,
    ),
}
SECTION_ALIASES = {"conv": "convolutional", "max": "maxpool"}


@dataclass(frozen=True)
class Layer:
    """One darknet layer.

    inputs: absolute indices of the layers this one reads (``-1`` = network input).
    in_shapes / out_shape: ``(H, W, C)``.
    """

    index: int
    kind: str
    line: int
    params: Any
    inputs: tuple[int, ...]
    in_shapes: tuple[tuple[int, int, int], ...]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Network:
    """The parsed cfg: ``[net]`` parameters plus layers in file order."""

    path: str
    sha256: str
    net: NetParams
    layers: tuple[Layer, ...]
    yolo_indices: tuple[int, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return (self.net.height, self.net.width, self.net.channels)

    @property
    def yolo_layers(self) -> tuple[Layer, ...]:
        """The ``[yolo]`` layers in declaration order (== head order of a converted model)."""
        return tuple(self.layers[i] for i in self.yolo_indices)

    def shape_of(self, index: int) -> tuple[int, int, int]:
        return self.input_shape if index == NETWORK_INPUT else self.layers[index].out_shape

    @property
    def conv_gflop(self) -> float:
        """GFLOP of one forward pass, counted as darknet counts it: every convolution's
        ``2 x size^2 x (C_in / groups) x filters x H_out x W_out`` (a multiply-add is 2 FLOP;
        batch norm, activations and the other layers are left out). yolov4.cfg at 416: 60.1."""
        total = 0
        for layer in self.layers:
            if layer.kind == "convolutional":
                p = layer.params
                h, w, _ = layer.out_shape
                c_in = layer.in_shapes[0][2]
                total += 2 * p.size * p.size * (c_in // p.groups) * p.filters * h * w
        return total / 1e9


# --- step 1: read blocks -----------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    name: str
    line: int
    options: dict[str, tuple[str, int]]


def _read_blocks(text: str, path: str) -> list[_Block]:
    blocks: list[_Block] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet strips every blank
        line = line.split("#", 1)[0]
        if not line or line[0] == ";":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{path}:{lineno}: malformed section header {raw.strip()!r}")
            blocks.append(_Block(line[1:-1], lineno, {}))
            continue
        if not blocks:
            raise CfgError(f"{path}:{lineno}: option {line!r} before any [section]")
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise CfgError(
                f"{path}:{lineno}: [{blocks[-1].name}] expected option=value, got {line!r}"
            )
        if key in blocks[-1].options:
            raise CfgError(f"{path}:{lineno}: [{blocks[-1].name}] option {key!r} given twice")
        blocks[-1].options[key] = (value, lineno)
    return blocks


# --- step 2: schema ---------------------------------------------------------------------
def _apply_schema(block: _Block, kind: str, path: str) -> dict[str, Any]:
    schema = SCHEMAS[kind]
    for key, (_, lineno) in block.options.items():
        if key not in schema.options and key not in schema.ignored:
            raise CfgError(f"{path}:{lineno}: [{block.name}] unknown option {key!r}")
    values: dict[str, Any] = {}
    for key, (parse, default) in schema.options.items():
        if key not in block.options:
            if default is _REQUIRED:
                raise CfgError(
                    f"{path}:{block.line}: [{block.name}] missing required option {key!r}"
                )
            values[key] = default
            continue
        raw, lineno = block.options[key]
        try:
            values[key] = parse(raw)
        except ValueError as e:
            raise CfgError(
                f"{path}:{lineno}: [{block.name}] bad value {key}={raw!r} ({e})"
            ) from None
    return values


def _record(kind: str, values: dict[str, Any]) -> Any:
    names = {f.name for f in fields(SCHEMAS[kind].record)}
    return SCHEMAS[kind].record(**{(k if k in names else k + "_"): v for k, v in values.items()})


# --- step 3: indices and shapes ------------------------------------------------------------
Shape = tuple[int, int, int]


def _conv_shape(p: ConvParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, _ = ins[0]
    k, s, pad = p.size, p.stride, p.pad_px
    return ((h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1, p.filters)


def _route_shape(p: RouteParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, _ = ins[0]
    if any(s[:2] != (h, w) for s in ins):
        raise ValueError(f"route inputs differ in size: {list(ins)}")
    if any(s[2] % p.groups for s in ins):
        raise ValueError(f"channels {[s[2] for s in ins]} not divisible by groups={p.groups}")
    return (h, w, sum(s[2] // p.groups for s in ins))


def _shortcut_shape(p: ShortcutParams, ins: tuple[Shape, ...]) -> Shape:
    if any(s != ins[0] for s in ins):
        raise ValueError(f"shortcut shapes differ: {list(ins)} (darknet's partial add unsupported)")
    return ins[0]


def _maxpool_shape(p: MaxPoolParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    return ((h + p.padding - p.size) // p.stride + 1, (w + p.padding - p.size) // p.stride + 1, c)


def _upsample_shape(p: UpsampleParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    return (h * p.stride, w * p.stride, c)


def _yolo_shape(p: YoloParams, ins: tuple[Shape, ...]) -> Shape:
    if ins[0][2] != len(p.mask) * (5 + p.classes):
        raise ValueError(
            f"input has {ins[0][2]} channels, expected len(mask) * (5 + classes)"
            f" = {len(p.mask) * (5 + p.classes)}"
        )
    return ins[0]


SHAPES: dict[str, Callable[[Any, tuple[Shape, ...]], Shape]] = {
    "convolutional": _conv_shape,
    "route": _route_shape,
    "shortcut": _shortcut_shape,
    "maxpool": _maxpool_shape,
    "upsample": _upsample_shape,
    "yolo": _yolo_shape,
}


def _absolute(refs: tuple[int, ...], index: int) -> tuple[int, ...]:
    return tuple(r + index if r < 0 else r for r in refs)


def _finish_params(kind: str, p: Any, index: int) -> tuple[Any, tuple[int, ...]]:
    """Defaults that depend on other options, absolute indices; returns (params, inputs)."""
    if kind == "route":
        p = replace(p, layers=_absolute(p.layers, index))
        return p, p.layers
    if kind == "shortcut":
        p = replace(p, from_=_absolute(p.from_, index))
        return p, (index - 1, *p.from_)
    if kind == "maxpool":
        size = p.stride if p.size is None else p.size
        p = replace(p, size=size, padding=size - 1 if p.padding is None else p.padding)
    return p, (index - 1,)


def _check_params(kind: str, p: Any) -> None:
    """Value checks darknet would hit at run time; raise ValueError."""
    if kind == "convolutional" and (p.size < 1 or p.stride < 1 or p.filters < 1 or p.groups < 1):
        raise ValueError("size, stride, filters and groups must be >= 1")
    if kind == "maxpool" and (p.size < 1 or p.stride < 1 or p.padding < 0):
        raise ValueError("size and stride must be >= 1, padding >= 0")
    if kind == "route" and not (p.groups >= 1 and 0 <= p.group_id < p.groups):
        raise ValueError(
            f"need groups >= 1 and 0 <= group_id < groups (got {p.groups}, {p.group_id})"
        )
    if kind == "upsample" and p.stride < 1:
        raise ValueError("stride must be >= 1 (darknet's negative-stride downsample unsupported)")
    if kind == "yolo":
        if len(p.anchors) != 2 * p.num:
            raise ValueError(f"{len(p.anchors)} anchor values for num={p.num} (need {2 * p.num})")
        if not p.mask or any(not 0 <= m < p.num for m in p.mask):
            raise ValueError(f"mask {list(p.mask)} must be non-empty indices < num={p.num}")


def parse_cfg_text(
    text: str, *, path: str = "<cfg>", size: int | tuple[int, int] | None = None
) -> Network:
    """Parse cfg text. ``size``: override [net] width/height (int or (H, W), multiples of 32)."""
    blocks = _read_blocks(text, path)
    if not blocks or blocks[0].name not in ("net", "network"):
        raise CfgError(f"{path}: first section must be [net]")
    net = _record("net", _apply_schema(blocks[0], "net", path))
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise CfgError(f"{path}: --size {h}x{w} must be positive multiples of 32")
        net = replace(net, height=h, width=w)
    shapes: dict[int, Shape] = {NETWORK_INPUT: (net.height, net.width, net.channels)}
    layers: list[Layer] = []
    for index, block in enumerate(blocks[1:]):
        kind = SECTION_ALIASES.get(block.name, block.name)
        if kind not in SCHEMAS or kind == "net":
            raise CfgError(
                f"{path}:{block.line}: unknown section [{block.name}] "
                f"(supported: {', '.join(k for k in SCHEMAS if k != 'net')})"
            )
        params, inputs = _finish_params(
            kind, _record(kind, _apply_schema(block, kind, path)), index
        )
        where = f"{path}:{block.line}: [{block.name}] (layer {index})"
        bad = [r for r in inputs if not NETWORK_INPUT <= r < index]
        if bad:
            raise CfgError(f"{where}: layer reference(s) {bad} out of range")
        try:
            _check_params(kind, params)
            in_shapes = tuple(shapes[r] for r in inputs)
            out = SHAPES[kind](params, in_shapes)
        except ValueError as e:
            raise CfgError(f"{where}: {e}") from None
        if min(out) <= 0:
            raise CfgError(f"{where}: output shape {out} is empty (input too small?)")
        shapes[index] = out
        layers.append(Layer(index, kind, block.line, params, inputs, in_shapes, out))
    yolo = tuple(layer.index for layer in layers if layer.kind == "yolo")
    if not yolo:
        raise CfgError(f"{path}: no [yolo] section")
    sha = hashlib.sha256(text.encode()).hexdigest()
    return Network(path, sha, net, tuple(layers), yolo)


def parse_cfg(path: str | Path, *, size: int | tuple[int, int] | None = None) -> Network:
    """Parse a darknet cfg file; see :func:`parse_cfg_text`. ``Network.sha256`` hashes the bytes."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{p}: cfg file not found") from None
    except OSError as e:
        raise InputFileError(f"{p}: cannot read cfg ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CfgError(f"{p}: not a text file") from None
    net = parse_cfg_text(text, path=str(p), size=size)
    return replace(net, sha256=hashlib.sha256(data).hexdigest())
