"""Table-driven darknet ``.cfg`` parser -> immutable :class:`Network` description.

Three steps, each driven by a table:

1. read the file into ``(section, line, {option: (raw value, line)})`` blocks (darknet strips
   every blank from a line, ``#``/``;`` start a comment). A repeated option keeps its FIRST
   value, as darknet's ``option_find`` does (it walks the list from the front); the later ones
   must still be known options;
2. check each block against :data:`SCHEMAS` (per section, every option that changes inference,
   with its darknet default spelled out as in darknet ``parser.c``) and :data:`TRAINING_ONLY`
   (the one table of options darknet reads that never change an inference result, each with
   why; they are parsed for type and dropped). Anything else is a :class:`CfgError` naming the
   file, the line and the section/option; so is a value we cannot honour
   (:data:`ONLY_DEFAULT`);
3. resolve layer references to absolute indices and track every layer's output shape
   ``(H, W, C)`` with :data:`SHAPES`.

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
ACTIVATIONS = (
    "leaky", "mish", "linear", "logistic", "relu", "swish",  # what darknet's cfgs use
    "hard_mish", "loggy", "relu6", "elu", "selu", "gelu", "relie", "ramp", "revleaky", "tanh",
    "hardtan", "lhtan", "plse",
)  # darknet's others: stair and normalize_channels* are not supported
DARKNET_NMS_KINDS = {"default": "greedy", "greedynms": "greedy", "diounms": "diou"}  # -> ours
HEAD_SECTIONS = ("yolo", "Gaussian_yolo", "region")  # detection heads (cfg section names)


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


def _text(s: str) -> str:
    return s


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(s: str) -> str:
        if s not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return s

    return parse


def _activation(s: str) -> str:
    if s not in ACTIVATIONS:
        raise ValueError(f"unsupported activation (supported: {', '.join(ACTIVATIONS)})")
    return s


def _nms_kind(s: str) -> str:
    # darknet maps any other name to its default (greedy) NMS; we reject it: a typo
    if s not in DARKNET_NMS_KINDS:
        raise ValueError(f"unsupported nms_kind (supported: {', '.join(DARKNET_NMS_KINDS)})")
    return DARKNET_NMS_KINDS[s]


def _batch_normalize(s: str) -> int:
    v = int(s)
    if v not in (0, 1, 2):
        raise ValueError("expected 0, 1 or 2 (cbn)")
    return v


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
    stride_x: int = 0  # resolved to ``stride`` when not given (darknet)
    stride_y: int = 0
    dilation: int = 1
    share_index: int | None = None  # absolute index of the layer whose weights this one uses
    xnor: bool = False  # binary input and weights (darknet XNOR-net)
    binary: bool = False  # binary weights

    @property
    def pad_px(self) -> int:
        """Zero padding per side: ``size // 2`` if ``pad=1`` (darknet), else ``padding``;
        a dilated conv pads ``pad_px * dilation`` (darknet's im2col / cuDNN descriptor)."""
        return self.size // 2 if self.pad else self.padding


@dataclass(frozen=True)
class CrnnParams:
    """``[crnn]``: a convolutional RNN cell of three convolutions (input: C -> hidden,
    self: hidden -> hidden, output: hidden -> output; each with the same size, pad, batch
    norm and activation). One image is one time step from darknet's zero initial state
    (a freshly loaded network's first frame): ``state = input(x) + self(0)``,
    ``out = output(state)``."""

    size: int
    stride: int
    pad: bool
    padding: int
    output: int
    hidden: int
    groups: int
    activation: str
    batch_normalize: bool
    shortcut: bool = False

    @property
    def pad_px(self) -> int:
        return self.size // 2 if self.pad else self.padding

    def convs(self, c_in: int) -> tuple[tuple[str, int, int], ...]:
        """``((name, in channels, filters), ...)`` of the three convolutions, file order."""
        return (("input", c_in, self.hidden), ("self", self.hidden, self.hidden),
                ("output", self.hidden, self.output))


@dataclass(frozen=True)
class RouteParams:
    layers: tuple[int, ...]  # absolute after parsing
    groups: int
    group_id: int


@dataclass(frozen=True)
class ShortcutParams:
    """``from_``: absolute indices. Darknet adds each ``from`` layer channel by channel into a
    copy of the previous layer's output, over the channels both have (its partial add);
    ``weights_type`` per_feature/per_channel scales every input by a learned weight first."""

    from_: tuple[int, ...]
    activation: str
    weights_type: str = "none"  # none | per_feature | per_channel  (per_layer == per_feature)
    weights_normalization: str = "none"  # none | relu | softmax  (avg_relu == relu)


@dataclass(frozen=True)
class MaxPoolParams:
    size: int
    stride: int
    padding: int  # total (both sides); darknet puts padding // 2 on the top/left
    stride_x: int = 0
    stride_y: int = 0

    @property
    def pad_before(self) -> int:
        return self.padding // 2


@dataclass(frozen=True)
class UpsampleParams:
    stride: int
    scale: float


@dataclass(frozen=True)
class FromParams:
    """``[scale_channels]`` / ``[sam]``: multiply by the output of layer ``from_`` (absolute).
    scale_channels: input (1, 1, C) scales every channel (or ``scale_wh``: input (H, W, 1)
    scales every position); sam: elementwise product of equal shapes."""

    from_: int
    activation: str
    scale_wh: bool = False


@dataclass(frozen=True)
class ReorgParams:
    stride: int
    reverse: bool


@dataclass(frozen=True)
class ActivationParams:
    activation: str


@dataclass(frozen=True)
class NoParams:
    """``[avgpool]`` (global average), ``[dropout]`` (identity at inference)."""


@dataclass(frozen=True)
class YoloParams:
    """``[yolo]`` and ``[Gaussian_yolo]``; ``[region]`` fills the same record (see
    :func:`_finish_params`): ``anchors`` in input pixels there too."""

    mask: tuple[int, ...]
    anchors: tuple[float, ...]  # flat w0, h0, w1, h1, ... (all ``num`` anchors)
    classes: int
    num: int
    scale_x_y: float
    new_coords: bool
    nms_kind: str  # greedy | diou
    beta_nms: float
    thresh: float = 0.2  # OpenCV's [yolo] thresh; darknet and we ignore it (TRAINING_ONLY)

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        """The anchors this head uses, ``((w, h), ...)`` in input pixels."""
        return tuple((self.anchors[2 * m], self.anchors[2 * m + 1]) for m in self.mask)


@dataclass(frozen=True)
class RegionParams:
    """YOLOv2 ``[region]``: anchors in grid cells, softmax (or raw) class probabilities."""

    anchors: tuple[float, ...]
    classes: int
    num: int
    coords: int
    softmax: bool

    @property
    def masked_anchors(self) -> tuple[tuple[float, float], ...]:
        return tuple((self.anchors[2 * i], self.anchors[2 * i + 1]) for i in range(self.num))


# --- schema: section -> (record type, {option: (parser, default)}) ----------------------------
_REQUIRED = object()  # marker: no darknet default we are willing to assume
Parser = Callable[[str], Any]

_NUMS = _floats  # darknet reads these lists with atoi/atof; we only check they are numbers
_ANY = "*"  # every layer section (darknet's main parse loop reads these for every layer)

# The ONE table of options darknet reads that never change an inference result:
# (sections, options, value parser, why). They are parsed (type-checked) and dropped.
TRAINING_ONLY_ROWS: tuple[tuple[tuple[str, ...], tuple[str, ...], Parser, str], ...] = (
    (("net",), ("batch", "subdivisions", "max_batches", "time_steps", "sequential_subdivisions",
                "max_epochs"), _int,
     "batch sizes and schedule length; inference runs one image at a time"
     " (max_epochs: darknet itself never reads it; it is in Gaussian_yolov3_BDD.cfg)"),
    (("net",), ("learning_rate", "learning_rate_min", "momentum", "decay", "B1", "B2", "eps",
                "gamma", "scale", "power", "loss_scale", "adversarial_lr", "ema_alpha"), _float,
     "optimizer and learning-rate schedule"),
    (("net",), ("policy",), _text, "learning-rate policy"),
    (("net",), ("steps", "scales", "seq_scales"), _NUMS, "learning-rate schedule"),
    (("net",), ("burn_in", "step", "sgdr_cycle", "sgdr_mult", "adam", "track", "augment_speed",
                "try_fix_nan", "weights_reject_freq", "equidistant_point", "use_cuda_graph",
                "dynamic_minibatch", "optimized_memory", "show_receptive_field", "inputs"), _int,
     "training loop, GPU memory and logging switches (inputs: non-image networks only)"),
    (("net",), ("badlabels_rejection_percentage", "num_sigmas_reject_badlabels",
                "workspace_size_limit_MB", "max_chart_loss", "resize_step"), _float,
     "training bookkeeping, GPU workspace, random-resize step"),
    (("net",), ("angle", "aspect", "saturation", "exposure", "hue"), _float,
     "data augmentation"),
    (("net",), ("max_crop", "min_crop", "flip", "blur", "gaussian_noise", "mixup", "cutmix",
                "mosaic", "mosaic_bound", "contrastive", "contrastive_jit_flip",
                "contrastive_color", "unsupervised", "attention"), _int,
     "data augmentation / self-supervised training"),
    (("net",), ("label_smooth_eps",), _float, "loss: label smoothing"),
    ((_ANY,), ("clip",), _float, "gradient clipping"),
    ((_ANY,), ("onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn"),
     _int, "which layers train (frozen layers still run forward unchanged)"),
    ((_ANY,), ("learning_rate",), _float, "per-layer learning-rate scale"),
    (("convolutional", "route"), ("stream", "wait_stream"), _int, "GPU stream scheduling"),
    (("convolutional",), ("bin_output",), _int,
     "XNOR speed-up: lets the next XNOR layer skip re-binarizing; same result"),
    (("convolutional",), ("assisted_excitation",), _float,
     "training-time feature excitation from ground truth (darknet: only if state.train)"),
    (("convolutional",), ("dot", "angle", "reverse"), _float,
     "training-time weight-deformation / repulsion parameters"),
    (("convolutional",), ("grad_centr",), _int, "gradient centralization"),
    (("maxpool",), ("maxpool_zero_nonmax",), _int, "backward pass only"),
    (("dropout",), ("probability", "dropblock_size_rel", "dropblock_size_abs"), _float,
     "dropout is the identity at inference (darknet returns unless state.train)"),
    (("dropout",), ("dropblock",), _int, "dropout is the identity at inference"),
    (("yolo", "Gaussian_yolo", "region"), ("jitter", "ignore_thresh", "truth_thresh", "random",
                                          "resize", "iou_normalizer", "cls_normalizer",
                                          "obj_normalizer", "delta_normalizer", "uc_normalizer",
                                          "iou_thresh", "max_delta", "label_smooth_eps",
                                          "object_scale", "noobject_scale", "class_scale",
                                          "coord_scale", "mask_scale", "sim_thresh",
                                          "track_ciou_norm", "beta1"), _float,
     "loss weights and training-time matching thresholds (uc_normalizer in [yolo] and beta1:"
     " darknet itself never reads them; they are in yolov4-sam-mish-csp-reorg-bfm.cfg)"),
    (("yolo", "Gaussian_yolo", "region"), ("iou_loss", "iou_thresh_kind", "counters_per_class"),
     _text, "loss choice and class balancing"),
    (("yolo", "Gaussian_yolo", "region"), ("focal_loss", "objectness_smooth", "max", "rescore",
                                          "bias_match", "absolute", "log", "sqrt", "classfix",
                                          "show_details", "embedding_layer",
                                          "track_history_size", "dets_for_track",
                                          "dets_for_show"), _int,
     "loss switches, max ground-truth boxes, tracking embeddings (not detections)"),
    (("yolo", "Gaussian_yolo", "region"), ("thresh",), _float,
     "OpenCV's importer zeroes scores below it; darknet's detector uses its -thresh argument;"
     " we use --score"),
    (("yolo", "Gaussian_yolo", "region"), ("map",), _text,
     "class remapping for evaluation on another dataset"),
    (("contrastive",), ("classes", "yolo_layer", "contrastive_neg_max"), _int,
     "[contrastive] is a training loss over embeddings; it is the identity at inference"),
    (("contrastive",), ("temperature", "cls_normalizer", "max_delta"), _float,
     "[contrastive] is a training loss over embeddings; it is the identity at inference"),
)
TRAINING_ONLY: dict[tuple[str, str], tuple[Parser, str]] = {
    (section, name): (parse, why)
    for sections, names, parse, why in TRAINING_ONLY_ROWS
    for section in sections
    for name in names
}

_YOLO_OPTIONS: dict[str, tuple[Parser, Any]] = {
    "mask": (_ints, None),  # None: every anchor (darknet: no mask -> 0..num-1)
    "anchors": (_floats, ()),
    "classes": (_int, 20),
    "num": (_int, 1),
    "scale_x_y": (_float, 1.0),
    "new_coords": (_bool, False),
    "nms_kind": (_nms_kind, "greedy"),
    "beta_nms": (_float, 0.6),
}
_FROM = {"from": (_int, _REQUIRED), "activation": (_activation, "linear")}
_POOL = {
    "size": (_int, None),  # default stride; resolved in _finish_params
    "stride": (_int, 1),
    "stride_x": (_int, None),
    "stride_y": (_int, None),
    "padding": (_int, None),  # default size - 1
}


@dataclass(frozen=True)
class SectionSchema:
    record: type
    options: dict[str, tuple[Parser, Any]]


SCHEMAS: dict[str, SectionSchema] = {
    "net": SectionSchema(
        NetParams,
        {
            "width": (_int, 416),
            "height": (_int, 416),
            "channels": (_int, 3),
            "letter_box": (_bool, False),
        },
    ),
    "convolutional": SectionSchema(
        ConvParams,
        {
            "filters": (_int, 1),
            "size": (_int, 1),
            "stride": (_int, 1),
            "stride_x": (_int, -1),
            "stride_y": (_int, -1),
            "dilation": (_int, 1),
            "pad": (_int, 0),
            "padding": (_int, 0),
            "groups": (_int, 1),
            "batch_normalize": (_batch_normalize, 0),
            "cbn": (_int, 0),
            "activation": (_activation, "logistic"),
            "share_index": (_int, None),
            "xnor": (_bool, False),
            "binary": (_bool, False),
            # accepted only at their default (ONLY_DEFAULT)
            "flipped": (_int, 0),
            "antialiasing": (_int, 0),
            "coordconv": (_int, 0),
            "sway": (_int, 0),
            "rotate": (_int, 0),
            "stretch": (_int, 0),
            "stretch_sway": (_int, 0),
            "dontload": (_int, 0),
            "dontloadscales": (_int, 0),
        },
    ),
    "route": SectionSchema(
        RouteParams,
        {"layers": (_ints, _REQUIRED), "groups": (_int, 1), "group_id": (_int, 0)},
    ),
    "shortcut": SectionSchema(
        ShortcutParams,
        {
            "from": (_ints, _REQUIRED),
            "activation": (_activation, "linear"),
            "weights_type": (_choice("none", "per_feature", "per_layer", "per_channel"), "none"),
            "weights_normalization": (_choice("none", "relu", "avg_relu", "softmax"), "none"),
        },
    ),
    "maxpool": SectionSchema(
        MaxPoolParams,
        {**_POOL, "maxpool_depth": (_int, 0), "out_channels": (_int, 1), "antialiasing": (_int, 0)},
    ),
    "local_avgpool": SectionSchema(MaxPoolParams, dict(_POOL)),
    "avgpool": SectionSchema(NoParams, {}),
    "dropout": SectionSchema(NoParams, {}),
    "contrastive": SectionSchema(NoParams, {}),
    "upsample": SectionSchema(UpsampleParams, {"stride": (_int, 2), "scale": (_float, 1.0)}),
    "scale_channels": SectionSchema(FromParams, {**_FROM, "scale_wh": (_bool, False)}),
    "sam": SectionSchema(FromParams, dict(_FROM)),
    "reorg3d": SectionSchema(ReorgParams, {"stride": (_int, 1), "reverse": (_bool, False)}),
    "reorg": SectionSchema(ReorgParams, {"stride": (_int, 1), "reverse": (_bool, False)}),
    "activation": SectionSchema(ActivationParams, {"activation": (_activation, "linear")}),
    "crnn": SectionSchema(
        CrnnParams,
        {
            "size": (_int, 3),
            "stride": (_int, 1),
            "pad": (_bool, False),
            "padding": (_int, 0),
            "output": (_int, 1),
            "hidden": (_int, 1),
            "groups": (_int, 1),
            "activation": (_activation, "logistic"),
            "batch_normalize": (_bool, False),
            "shortcut": (_bool, False),
            "dilation": (_int, 1),
            "xnor": (_int, 0),
        },
    ),
    "yolo": SectionSchema(YoloParams, dict(_YOLO_OPTIONS)),
    "Gaussian_yolo": SectionSchema(
        YoloParams, {**_YOLO_OPTIONS, "yolo_point": (_text, "center")}
    ),
    "region": SectionSchema(
        RegionParams,
        {
            "anchors": (_floats, ()),
            "classes": (_int, 20),
            "num": (_int, 1),
            "coords": (_int, 4),
            "softmax": (_bool, False),
            "tree": (_text, None),
            "background": (_int, 0),
        },
    ),
}
# darknet's other spellings of the same sections ([reorg3d] is darknet's REORG, [reorg] its
# REORG_OLD: different channel orders)
SECTION_ALIASES = {
    "conv": "convolutional",
    "max": "maxpool",
    "local_avg": "local_avgpool",
    "avg": "avgpool",
    "network": "net",
}
# (section, option) -> the only value we can convert, and why others are refused
ONLY_DEFAULT: dict[tuple[str, str], str] = {
    ("convolutional", "flipped"): "transposed weight files",
    ("convolutional", "antialiasing"): "anti-aliased (blur-pool) convolutions",
    ("convolutional", "coordconv"): "CoordConv",
    ("convolutional", "sway"): "deformable-weight convolutions",
    ("convolutional", "rotate"): "deformable-weight convolutions",
    ("convolutional", "stretch"): "deformable-weight convolutions",
    ("convolutional", "stretch_sway"): "deformable-weight convolutions",
    ("convolutional", "dontload"): "layers whose weights are not in the file",
    ("convolutional", "dontloadscales"): "layers whose batch-norm scales are not in the file",
    ("maxpool", "maxpool_depth"): "max-pooling across channels",
    ("maxpool", "out_channels"): "max-pooling across channels",
    ("maxpool", "antialiasing"): "anti-aliased max-pooling",
    ("region", "tree"): "hierarchical softmax (YOLO9000 word trees)",
    ("crnn", "dilation"): "dilated recurrent convolutions",
    ("crnn", "xnor"): "XNOR recurrent convolutions",
    ("region", "background"): "background class",
    ("region", "coords"): "more than 4 box coordinates",
    ("Gaussian_yolo", "yolo_point"): "box points other than the centre",
}
# sections darknet knows that we do not convert, with what to say
UNSUPPORTED_SECTIONS = {
    "detection": "is a YOLOv1 head: not supported (YOLOv2 [region] and later are)",
    "local": "(locally connected, YOLOv1) is not supported",
    "connected": "(fully connected, YOLOv1 and classifiers) is not supported",
    "rnn": "(recurrent) is not supported",
    "gru": "(recurrent) is not supported",
    "lstm": "(recurrent) is not supported",
    "conv_lstm": "(recurrent) is not supported",
    "history": "is not supported",
    "crop": "(training-time crop of YOLOv1 cfgs) is not supported",
    "cost": "(classifier loss) is not supported",
    "softmax": "(classifier) is not supported",
    "soft": "(classifier) is not supported",
    "normalization": "(LRN) is not supported",
    "lrn": "(LRN) is not supported",
    "batchnorm": "(stand-alone batch norm) is not supported",
    "implicit": "(YOLOR implicit knowledge) is not supported",
    "empty": "is not supported",
    "silence": "is not supported",
}


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
    """The parsed cfg: ``[net]`` parameters plus layers in file order.

    ``yolo_indices``: every detection head (``[yolo]``, ``[Gaussian_yolo]``, ``[region]``) in
    declaration order (== head order of a converted model).
    """

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
        """The head layers in declaration order (== head order of a converted model)."""
        return tuple(self.layers[i] for i in self.yolo_indices)

    def shape_of(self, index: int) -> tuple[int, int, int]:
        return self.input_shape if index == NETWORK_INPUT else self.layers[index].out_shape

    @property
    def conv_gflop(self) -> float:
        """GFLOP of one forward pass, counted as darknet counts it: every convolution's
        ``2 x size^2 x (C_in / groups) x filters x H_out x W_out`` (a multiply-add is 2 FLOP;
        batch norm, activations and the other layers are left out). yolov4.cfg at 416: 60.1."""
        return sum(layer_bflops(layer) for layer in self.layers)


def layer_bflops(layer: Layer) -> float:
    """Darknet's BFLOPs of one layer (convolutions, and a [crnn]'s three; 0 for the others)."""
    if layer.kind == "crnn":
        p, (h, w, _) = layer.params, layer.out_shape
        return sum(2 * p.size * p.size * (ci // p.groups) * f * h * w
                   for _, ci, f in p.convs(layer.in_shapes[0][2])) / 1e9
    if layer.kind != "convolutional":
        return 0.0
    p = layer.params
    h, w, _ = layer.out_shape
    c_in = layer.in_shapes[0][2]
    return 2 * p.size * p.size * (c_in // p.groups) * p.filters * h * w / 1e9


# --- step 1: read blocks -----------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    name: str
    line: int
    options: dict[str, tuple[str, int]]
    repeated: tuple[tuple[str, int], ...] = ()  # later copies of an option: (key, line)


def _read_blocks(text: str, path: str) -> list[_Block]:
    blocks: list[_Block] = []
    repeats: list[list[tuple[str, int]]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet strips every blank
        line = line.split("#", 1)[0]
        if not line or line[0] == ";":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{path}:{lineno}: malformed section header {raw.strip()!r}")
            blocks.append(_Block(line[1:-1], lineno, {}))
            repeats.append([])
            continue
        if not blocks:
            raise CfgError(f"{path}:{lineno}: option {line!r} before any [section]")
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise CfgError(
                f"{path}:{lineno}: [{blocks[-1].name}] expected option=value, got {line!r}"
            )
        if key in blocks[-1].options:  # darknet's option_find returns the first one
            repeats[-1].append((key, lineno))
            continue
        blocks[-1].options[key] = (value, lineno)
    return [replace(b, repeated=tuple(r)) for b, r in zip(blocks, repeats, strict=True)]


# --- step 2: schema ---------------------------------------------------------------------
def _check_known(block: _Block, kind: str, path: str) -> None:
    schema = SCHEMAS[kind]
    where = [(k, ln) for k, (_, ln) in block.options.items()] + list(block.repeated)
    for key, lineno in where:
        if key in schema.options:
            continue
        ignored = TRAINING_ONLY.get((kind, key)) or (
            TRAINING_ONLY.get((_ANY, key)) if kind != "net" else None
        )
        if ignored is None:
            raise CfgError(f"{path}:{lineno}: [{block.name}] unknown option {key!r}")
        if key in block.options and block.options[key][1] == lineno:
            raw = block.options[key][0]
            try:
                ignored[0](raw)
            except ValueError as e:
                raise CfgError(
                    f"{path}:{lineno}: [{block.name}] bad value {key}={raw!r} ({e})"
                ) from None


def _apply_schema(block: _Block, kind: str, path: str) -> dict[str, Any]:
    _check_known(block, kind, path)
    values: dict[str, Any] = {}
    for key, (parse, default) in SCHEMAS[kind].options.items():
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
        what = ONLY_DEFAULT.get((kind, key))
        if what is not None and values[key] != default:
            raise CfgError(
                f"{path}:{lineno}: [{block.name}] {key}={raw} is not supported: {what}"
            )
    return values


def _record(kind: str, values: dict[str, Any]) -> Any:
    names = {f.name for f in fields(SCHEMAS[kind].record)}
    out = {}
    for k, v in values.items():
        name = k if k in names else k + "_"
        if name in names:
            out[name] = v
    return SCHEMAS[kind].record(**out)


# --- step 3: indices and shapes ------------------------------------------------------------
Shape = tuple[int, int, int]


def _conv_shape(p: ConvParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    if c % p.groups or p.filters % p.groups:
        raise ValueError(f"input channels {c} and filters {p.filters} must divide by groups")
    k, pad = p.size, p.pad_px
    out_h, out_w = (h + 2 * pad - k) // p.stride_y + 1, (w + 2 * pad - k) // p.stride_x + 1
    if p.dilation > 1:  # darknet's shape ignores dilation; its im2col pads pad * dilation
        ke = p.dilation * (k - 1) + 1
        real = ((h + 2 * pad * p.dilation - ke) // p.stride_y + 1,
                (w + 2 * pad * p.dilation - ke) // p.stride_x + 1)
        if real != (out_h, out_w):
            raise ValueError(f"dilation={p.dilation} with size={k}, padding={pad} computes "
                             f"{real}, darknet declares {(out_h, out_w)}")
    return (out_h, out_w, p.filters)


def _crnn_shape(p: CrnnParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    if c % p.groups or p.hidden % p.groups or p.output % p.groups:
        raise ValueError("channels, hidden and output must divide by groups")
    k, pad = p.size, p.pad_px
    out = ((h + 2 * pad - k) // p.stride + 1, (w + 2 * pad - k) // p.stride + 1)
    if out != (h, w):  # darknet asserts input.outputs == self.outputs
        raise ValueError(f"the state must keep the input size {h}x{w} (got {out})")
    return (h, w, p.output)


def _route_shape(p: RouteParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, _ = ins[0]
    if any(s[:2] != (h, w) for s in ins):
        raise ValueError(f"route inputs differ in size: {list(ins)}")
    if any(s[2] % p.groups for s in ins):
        raise ValueError(f"channels {[s[2] for s in ins]} not divisible by groups={p.groups}")
    return (h, w, sum(s[2] // p.groups for s in ins))


def _shortcut_shape(p: ShortcutParams, ins: tuple[Shape, ...]) -> Shape:
    # darknet asserts equal width/height; channels may differ (its partial add)
    if any(s[:2] != ins[0][:2] for s in ins):
        raise ValueError(f"shortcut inputs differ in width/height: {list(ins)}")
    return ins[0]


def _pool_shape(p: MaxPoolParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    return ((h + p.padding - p.size) // p.stride_y + 1,
            (w + p.padding - p.size) // p.stride_x + 1, c)


def _upsample_shape(p: UpsampleParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    return (h * p.stride, w * p.stride, c)


def _same_shape(p: Any, ins: tuple[Shape, ...]) -> Shape:
    return ins[0]


def _avgpool_shape(p: NoParams, ins: tuple[Shape, ...]) -> Shape:
    return (1, 1, ins[0][2])


def _scale_channels_shape(p: FromParams, ins: tuple[Shape, ...]) -> Shape:
    scale, base = ins
    want = (base[0], base[1], 1) if p.scale_wh else (1, 1, base[2])
    if scale != want:
        raise ValueError(f"input {scale} cannot scale layer {p.from_}'s {base} (needs {want})")
    return base


def _sam_shape(p: FromParams, ins: tuple[Shape, ...]) -> Shape:
    if ins[0] != ins[1]:
        raise ValueError(f"input {ins[0]} and layer {p.from_}'s {ins[1]} differ")
    return ins[1]


def _reorg_shape(p: ReorgParams, ins: tuple[Shape, ...]) -> Shape:
    h, w, c = ins[0]
    s = p.stride
    if p.reverse:
        if c % (s * s):
            raise ValueError(f"channels {c} not divisible by stride^2 = {s * s}")
        return (h * s, w * s, c // (s * s))
    if h % s or w % s:
        raise ValueError(f"input {h}x{w} not divisible by stride {s}")
    return (h // s, w // s, c * s * s)


def head_channels(kind: str, classes: int) -> int:
    """Channels per anchor of a head: yolo/region ``5 + C``, Gaussian_yolo ``9 + C``."""
    return (9 if kind == "Gaussian_yolo" else 5) + classes


def _head_shape(kind: str) -> Callable[[Any, tuple[Shape, ...]], Shape]:
    def shape(p: Any, ins: tuple[Shape, ...]) -> Shape:
        n = len(p.mask) if kind != "region" else p.num
        want = n * head_channels(kind, p.classes)
        if ins[0][2] != want:
            per = "len(mask)" if kind != "region" else "num"
            raise ValueError(
                f"input has {ins[0][2]} channels, expected {per} * "
                f"({head_channels(kind, 0)} + classes) = {want}"
            )
        return ins[0]

    return shape


SHAPES: dict[str, Callable[[Any, tuple[Shape, ...]], Shape]] = {
    "convolutional": _conv_shape,
    "crnn": _crnn_shape,
    "route": _route_shape,
    "shortcut": _shortcut_shape,
    "maxpool": _pool_shape,
    "local_avgpool": _pool_shape,
    "avgpool": _avgpool_shape,
    "dropout": _same_shape,
    "contrastive": _same_shape,
    "activation": _same_shape,
    "upsample": _upsample_shape,
    "scale_channels": _scale_channels_shape,
    "sam": _sam_shape,
    "reorg3d": _reorg_shape,
    "reorg": _reorg_shape,
    "yolo": _head_shape("yolo"),
    "Gaussian_yolo": _head_shape("Gaussian_yolo"),
    "region": _head_shape("region"),
}


def _absolute(refs: tuple[int, ...], index: int) -> tuple[int, ...]:
    return tuple(r + index if r < 0 else r for r in refs)


def _fit_anchors(anchors: tuple[float, ...], num: int) -> tuple[float, ...]:
    """darknet reads at most ``2 * num`` anchor values; missing ones keep its 0.5 default."""
    return tuple(anchors[: 2 * num]) + (0.5,) * max(0, 2 * num - len(anchors))


def _finish_conv(p: ConvParams, index: int, values: dict[str, Any]) -> ConvParams:
    sx, sy = p.stride_x, p.stride_y
    if sx < 1 or sy < 1:  # darknet: stride fills whichever of stride_x/stride_y is unset
        sx, sy = (p.stride if sx < 1 else sx), (p.stride if sy < 1 else sy)
    share = p.share_index
    if share is not None and share < 0:
        share += index
    return replace(
        p,
        stride_x=sx,
        stride_y=sy,
        pad=bool(p.pad),
        dilation=1 if p.size == 1 else p.dilation,  # darknet: size 1 ignores dilation
        batch_normalize=bool(p.batch_normalize or values.get("cbn")),
        share_index=share,
    )


def _finish_params(
    kind: str, p: Any, index: int, values: dict[str, Any]
) -> tuple[Any, tuple[int, ...]]:
    """Defaults that depend on other options, absolute indices; returns (params, inputs)."""
    prev = (index - 1,)
    if kind == "route":
        p = replace(p, layers=_absolute(p.layers, index))
        return p, p.layers
    if kind == "shortcut":
        wt = "per_feature" if p.weights_type == "per_layer" else p.weights_type
        wn = "relu" if p.weights_normalization == "avg_relu" else p.weights_normalization
        p = replace(p, from_=_absolute(p.from_, index), weights_type=wt, weights_normalization=wn)
        return p, (*prev, *p.from_)
    if kind in ("scale_channels", "sam"):
        p = replace(p, from_=_absolute((p.from_,), index)[0])
        return p, (*prev, p.from_)
    if kind == "convolutional":
        return _finish_conv(p, index, values), prev
    if kind in ("maxpool", "local_avgpool"):
        size = p.stride if p.size is None else p.size
        p = replace(
            p,
            size=size,
            padding=size - 1 if p.padding is None else p.padding,
            stride_x=p.stride if p.stride_x is None else p.stride_x,
            stride_y=p.stride if p.stride_y is None else p.stride_y,
        )
    if kind in ("yolo", "Gaussian_yolo"):
        mask = tuple(range(p.num)) if p.mask is None else p.mask
        p = replace(p, mask=mask, anchors=_fit_anchors(p.anchors, p.num))
    if kind == "region":
        p = replace(p, anchors=_fit_anchors(p.anchors, p.num))
    return p, prev


def _check_params(kind: str, p: Any) -> None:
    """Value checks darknet would hit at run time; raise ValueError."""
    if kind == "crnn" and min(p.size, p.stride, p.output, p.hidden, p.groups) < 1:
        raise ValueError("size, stride, output, hidden and groups must be >= 1")
    if kind == "convolutional" and min(p.size, p.stride_x, p.stride_y, p.filters, p.groups,
                                       p.dilation) < 1:
        raise ValueError("size, stride, filters, groups and dilation must be >= 1")
    if kind in ("maxpool", "local_avgpool") and (
        min(p.size, p.stride_x, p.stride_y) < 1 or p.padding < 0
    ):
        raise ValueError("size and stride must be >= 1, padding >= 0")
    if kind == "route" and not (p.groups >= 1 and 0 <= p.group_id < p.groups):
        raise ValueError(
            f"need groups >= 1 and 0 <= group_id < groups (got {p.groups}, {p.group_id})"
        )
    if kind == "upsample" and p.stride < 1:
        raise ValueError("stride must be >= 1 (darknet's negative-stride downsample unsupported)")
    if kind in ("reorg3d", "reorg") and p.stride < 1:
        raise ValueError("stride must be >= 1")
    if kind == "reorg" and p.reverse:
        raise ValueError("reverse=1 is not supported for the old [reorg] (use [reorg3d])")
    if kind in ("yolo", "Gaussian_yolo", "region") and (p.classes < 1 or p.num < 1):
        raise ValueError(f"need classes >= 1 and num >= 1 (got {p.classes}, {p.num})")
    if kind in ("yolo", "Gaussian_yolo") and (
        not p.mask or any(not 0 <= m < p.num for m in p.mask)
    ):
        raise ValueError(f"mask {list(p.mask)} must be non-empty indices < num={p.num} "
                         "(darknet would read past its anchor list)")


def _section_kind(block: _Block, path: str) -> str:
    kind = SECTION_ALIASES.get(block.name, block.name)
    if kind in UNSUPPORTED_SECTIONS:
        raise CfgError(f"{path}:{block.line}: [{block.name}] {UNSUPPORTED_SECTIONS[kind]}")
    if kind not in SCHEMAS or kind == "net":
        raise CfgError(
            f"{path}:{block.line}: unknown section [{block.name}] "
            f"(supported: {', '.join(k for k in SCHEMAS if k != 'net')})"
        )
    return kind


def _net_params(block: _Block, path: str, size: int | tuple[int, int] | None) -> NetParams:
    net = _record("net", _apply_schema(block, "net", path))
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise CfgError(f"{path}: --size {h}x{w} must be positive multiples of 32")
        net = replace(net, height=h, width=w)
    if min(net.height, net.width, net.channels) < 1:
        raise CfgError(f"{path}:{block.line}: [net] needs positive width, height and channels")
    return net


def parse_cfg_text(
    text: str, *, path: str = "<cfg>", size: int | tuple[int, int] | None = None
) -> Network:
    """Parse cfg text. ``size``: override [net] width/height (int or (H, W), multiples of 32)."""
    blocks = _read_blocks(text, path)
    if not blocks or SECTION_ALIASES.get(blocks[0].name, blocks[0].name) != "net":
        raise CfgError(f"{path}: first section must be [net]")
    net = _net_params(blocks[0], path, size)
    shapes: dict[int, Shape] = {NETWORK_INPUT: (net.height, net.width, net.channels)}
    layers: list[Layer] = []
    for index, block in enumerate(blocks[1:]):
        kind = _section_kind(block, path)
        values = _apply_schema(block, kind, path)
        params, inputs = _finish_params(kind, _record(kind, values), index, values)
        where = f"{path}:{block.line}: [{block.name}] (layer {index})"
        bad = [r for r in inputs if not NETWORK_INPUT <= r < index]
        share = getattr(params, "share_index", None)
        if share is not None and not (0 <= share < index and layers[share].kind == kind):
            bad.append(share)
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
    heads = tuple(layer.index for layer in layers if layer.kind in HEAD_SECTIONS)
    if not heads:
        raise CfgError(f"{path}: no detection head ([yolo], [Gaussian_yolo] or [region])")
    sha = hashlib.sha256(text.encode()).hexdigest()
    return Network(path, sha, net, tuple(layers), heads)


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
