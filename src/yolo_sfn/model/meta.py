"""The sidecar that travels with every converted model: ``<model>.tflite.json``.

Everything post-processing needs is here, so a ``.tflite`` plus its sidecar is a complete,
self-describing detector. The converter writes it; :mod:`yolo_sfn.core` reads it and checks
it against the interpreter's tensors before the first inference.

Head tensor layout (one per darknet head section, raw conv output, no activation):
    ``(1, H, W, A * R)`` NHWC, channel index ``a * R + k``, by ``HeadMeta.kind``:

    * ``yolo`` (``[yolo]``) and ``region`` (YOLOv2 ``[region]``), ``R = 5 + C``:
      ``k = 0..3`` tx, ty, tw, th; ``k = 4`` objectness logit; ``k = 5..`` class logits
      (``region``: softmax over the classes when ``softmax``, else used as they are).
      With ``new_coords`` the values are already logistic, as darknet's conv emits them.
    * ``gaussian_yolo`` (``[Gaussian_yolo]``), ``R = 9 + C``: ``k = 0..7`` the mean and
      uncertainty logits of x, y, w, h interleaved (mu_x, sigma_x, mu_y, sigma_y, ...);
      ``k = 8`` objectness logit; ``k = 9..`` class logits.

A ``region`` head's anchors are stored in input pixels like a ``yolo`` head's (darknet's grid
units times the head's stride), so one box formula serves both.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yolo_sfn.contract import NMS_KINDS
from yolo_sfn.errors import ModelError


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weights, models, weight-cache files)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

FORMAT = "yolo-sfn/model-meta"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
HEAD_KINDS = ("yolo", "gaussian_yolo", "region")


def _pos_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _pos_float(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def meta_path_for(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class HeadMeta:
    """One ``[yolo]`` head.

    grid: (H, W) of the head tensor; stride = input_size / grid.
    anchors: the masked anchors, ``[[w, h], ...]`` in input-size pixels, len == A.
    """

    grid: tuple[int, int]
    stride: int
    anchors: list[list[float]]
    scale_x_y: float = 1.0
    new_coords: bool = False
    kind: str = "yolo"  # HEAD_KINDS; see the module docstring
    softmax: bool = False  # region heads: softmax over the class logits

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    def row_width(self, num_classes: int) -> int:
        """Channels per anchor: ``9 + C`` for gaussian_yolo, else ``5 + C``."""
        return (9 if self.kind == "gaussian_yolo" else 5) + num_classes

    def problems(self) -> list[str]:
        out = []
        if not (len(self.grid) == 2 and all(_pos_int(v) for v in self.grid)):
            out.append(f"grid {self.grid!r} is not two positive integers")
        if not _pos_int(self.stride):
            out.append(f"stride {self.stride!r} is not a positive integer")
        if not self.anchors or not all(
            len(a) == 2 and all(_pos_float(x) for x in a) for a in self.anchors
        ):
            out.append(f"anchors {self.anchors!r} are not positive [w, h] pairs")
        if not _pos_float(self.scale_x_y):
            out.append(f"scale_x_y {self.scale_x_y!r} is not a positive number")
        if self.kind not in HEAD_KINDS:
            out.append(f"kind {self.kind!r} not in {HEAD_KINDS}")
        return out


@dataclass(frozen=True)
class ModelMeta:
    """input_size: (H, W) the network input; heads ordered as darknet declares them."""

    name: str
    input_size: tuple[int, int]
    num_classes: int
    names: list[str]
    heads: list[HeadMeta]
    precision: str = "fp32"
    weights_sha256: str = ""
    cfg_sha256: str = ""
    nms_kind: str = "greedy"  # darknet [yolo] nms_kind: greedynms -> greedy, diounms -> diou
    beta_nms: float = 0.6  # DIoU exponent (darknet default)
    letter_box: bool = False  # darknet [net] letter_box
    source: dict = field(default_factory=dict)  # free-form provenance (cfg path, tool versions)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ModelError(f"model metadata {self.name!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        """Every reason this metadata cannot describe a working detector (empty: fine)."""
        problems = []
        if not (len(self.input_size) == 2 and all(_pos_int(v) for v in self.input_size)):
            problems.append(f"input_size {self.input_size!r} is not two positive integers")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} not in {PRECISIONS}")
        if not _pos_int(self.num_classes):
            problems.append(f"num_classes {self.num_classes!r} is not a positive integer")
        elif not isinstance(self.names, list) or len(self.names) != self.num_classes:
            n = len(self.names) if isinstance(self.names, list) else self.names
            problems.append(f"{n!r} names for {self.num_classes} classes")
        if not self.heads:
            problems.append("no heads")
        for i, h in enumerate(self.heads):
            problems += [f"head {i}: {p}" for p in h.problems()]
        if self.nms_kind not in NMS_KINDS:
            problems.append(f"nms_kind {self.nms_kind!r} not greedy|diou")
        if not _pos_float(self.beta_nms):
            problems.append(f"beta_nms {self.beta_nms!r} is not a positive number")
        return problems

    def head_shape(self, i: int) -> tuple[int, int, int, int]:
        """Expected tensor shape of head ``i``: (1, H, W, A * R), R = row width (5 + C or
        9 + C, see :meth:`HeadMeta.row_width`)."""
        h = self.heads[i]
        return (1, h.grid[0], h.grid[1], h.num_anchors * h.row_width(self.num_classes))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object, *, source: str = "metadata") -> ModelMeta:
        if not isinstance(d, dict):
            kind = type(d).__name__
            raise ModelError(f"{source}: model metadata must be a JSON object, not {kind}")
        if d.get("format") != FORMAT:
            raise ModelError(
                f"{source}: not a yolo-sfn model metadata file (format={d.get('format')!r})"
            )
        if d.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{source}: unsupported metadata version {d.get('format_version')!r}"
            )
        try:
            heads = [
                HeadMeta(
                    grid=tuple(h["grid"]),
                    stride=h["stride"],
                    anchors=[list(a) for a in h["anchors"]],
                    scale_x_y=h.get("scale_x_y", 1.0),
                    new_coords=bool(h.get("new_coords", False)),
                    kind=h.get("kind", "yolo"),
                    softmax=bool(h.get("softmax", False)),
                )
                for h in d["heads"]
            ]
            fields = {k: v for k, v in d.items() if k != "heads"}
            fields["input_size"] = tuple(fields["input_size"])
            return cls(heads=heads, **fields)
        except ModelError as e:
            raise ModelError(f"{source}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelError(f"{source}: malformed model metadata ({type(e).__name__}: {e})") from e

    def save(self, model_path: str | Path) -> Path:
        p = meta_path_for(model_path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, model_path: str | Path) -> ModelMeta:
        p = meta_path_for(model_path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ModelError(
                f"{p}: model metadata sidecar missing (expected next to {Path(model_path).name})"
            ) from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{p}: unreadable model metadata ({e})") from e
        return cls.from_dict(d, source=str(p))
