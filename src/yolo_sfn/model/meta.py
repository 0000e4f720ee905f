"""The sidecar that travels with every converted model: ``<model>.tflite.json``.

Everything post-processing needs is here, so a ``.tflite`` plus its sidecar is a complete,
self-describing detector. The converter writes it; :mod:`yolo_sfn.core` reads it and checks
it against the interpreter's tensors before the first inference.

Head tensor layout (one per darknet ``[yolo]`` section, raw conv output, no activation):
    ``(1, H, W, A * (5 + C))`` NHWC, channel index ``a * (5 + C) + k`` with
    ``k = 0..3`` tx, ty, tw, th; ``k = 4`` objectness logit; ``k = 5..`` class logits.
    (With ``new_coords`` the values are already logistic, as darknet's conv emits them.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yolo_sfn.errors import ModelError

FORMAT = "yolo-sfn/model-meta"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


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

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)


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
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} not in {PRECISIONS}")
        if len(self.names) != self.num_classes:
            problems.append(f"{len(self.names)} names for {self.num_classes} classes")
        if not self.heads:
            problems.append("no heads")
        if self.nms_kind not in ("greedy", "diou"):
            problems.append(f"nms_kind {self.nms_kind!r} not greedy|diou")
        if problems:
            raise ModelError(f"model metadata {self.name!r}: " + "; ".join(problems))

    def head_shape(self, i: int) -> tuple[int, int, int, int]:
        """Expected tensor shape of head ``i``: (1, H, W, A * (5 + C))."""
        h = self.heads[i]
        return (1, h.grid[0], h.grid[1], h.num_anchors * (5 + self.num_classes))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "metadata") -> ModelMeta:
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
                    stride=int(h["stride"]),
                    anchors=[list(map(float, a)) for a in h["anchors"]],
                    scale_x_y=float(h.get("scale_x_y", 1.0)),
                    new_coords=bool(h.get("new_coords", False)),
                )
                for h in d["heads"]
            ]
            fields = {k: v for k, v in d.items() if k != "heads"}
            fields["input_size"] = tuple(fields["input_size"])
            return cls(heads=heads, **fields)
        except (KeyError, TypeError, ValueError) as e:
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
