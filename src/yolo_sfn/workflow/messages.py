"""One frozen dataclass per state boundary: ``from_event(dict)`` validates, ``to_dict()``
produces what the next state receives. Only keys and small numbers cross a state (the
256 KiB Step Functions limit): tensors and detections live in S3.

Flow per execution::

    execution input --(PlanEvent)--> Plan --(PlanResult)--> DetectImages (Map)
      per item (ItemSelector) ImageTask --> Preprocess --> Preprocessed --> Infer --> Inferred
        --> Postprocess --> Postprocessed --> Store --> StoreResult
      on a caught error: <that stage's input> + {"stage", "error": {"Error", "Cause"}}
        = FailureEvent --> RecordFailure (Store function) --> StoreResult
    PlanResult + execution id = SummarizeEvent --> Summarize --> SummarizeResult

Each stage message carries everything before it (``Preprocessed`` is an ``ImageTask`` plus
its own fields), so any stage's input is enough to record a failure. Unknown keys in stage
messages are ignored; unknown keys in the *execution input* are an error (typo guard).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from yolo_sfn.errors import InputValidationError
from yolo_sfn.workflow.config import RESIZE_MODES
from yolo_sfn.workflow.s3uri import S3Uri, parse_s3_uri, validate_bucket, validate_key

BATCH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # use .fullmatch
IMAGE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ERROR_MESSAGE = 2000
STAGES = ("preprocess", "infer", "postprocess", "store", "unknown")

_MISSING = object()


# --- field helpers ------------------------------------------------------------------------
def _obj(event: Any, what: str) -> dict:
    if not isinstance(event, dict):
        raise InputValidationError(f"{what}: expected a JSON object, got {type(event).__name__}")
    return event


def _field(event: dict, name: str, kind: type | tuple, *, prefix: str = "", default=_MISSING):
    label = f"{prefix}{name}"
    value = event.get(name)
    if value is None:
        if default is _MISSING:
            raise InputValidationError(f"{label}: required field missing")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise InputValidationError(f"{label}: expected {_kind_name(kinds)}, got bool")
    if not isinstance(value, kinds):
        raise InputValidationError(
            f"{label}: expected {_kind_name(kinds)}, got {type(value).__name__}")
    return value


def _kind_name(kinds: tuple) -> str:
    names = {str: "string", int: "integer", float: "number", dict: "object", list: "array",
             bool: "boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _string(event: dict, name: str, *, prefix: str = "", default=_MISSING) -> str:
    value = _field(event, name, str, prefix=prefix, default=default)
    if value is not default and not value:
        raise InputValidationError(f"{prefix}{name}: must not be empty")
    return value


def _fraction(event: dict, name: str, *, prefix: str = "", default=_MISSING) -> float | None:
    value = _field(event, name, (int, float), prefix=prefix, default=default)
    if value is None:
        return None
    try:
        value = float(value)  # JSON integers are unbounded: float(10**400) overflows
    except OverflowError:
        value = math.inf
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputValidationError(f"{prefix}{name}: must be a number in [0, 1], got {value}")
    return value


def _resize(event: dict, name: str = "resize", *, prefix: str = "", default=_MISSING):
    value = _field(event, name, str, prefix=prefix, default=default)
    if value is not None and value not in RESIZE_MODES:
        raise InputValidationError(f"{prefix}{name}: {value!r} not in {RESIZE_MODES}")
    return value


def _batch_id(event: dict, *, prefix: str = "", default=_MISSING):
    value = _field(event, "batch_id", str, prefix=prefix, default=default)
    if value is not None and not BATCH_ID_RE.fullmatch(value):
        raise InputValidationError(
            f"{prefix}batch_id: {value[:100]!r} must be 1-80 characters [A-Za-z0-9._-], "
            "starting with a letter or digit")
    return value


def _image_id(event: dict, *, prefix: str = "") -> str:
    value = _string(event, "image_id", prefix=prefix)
    if not IMAGE_ID_RE.fullmatch(value):
        raise InputValidationError(f"{prefix}image_id: {value[:100]!r} is not a valid image id")
    return value


def _key(event: dict, name: str, *, prefix: str = "") -> str:
    return validate_key(_string(event, name, prefix=prefix), field=f"{prefix}{name}")


def _timings(event: dict, *, prefix: str = "") -> dict[str, float]:
    raw = _field(event, "timings_ms", dict, prefix=prefix, default={})
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputValidationError(f"{prefix}timings_ms.{k}: expected a number")
        out[str(k)] = float(v)
    return out


def _s3_location(event: dict, name: str, *, prefix: str = "") -> S3Uri:
    """``{"bucket", "key"}`` object or an ``s3://`` string."""
    value = _field(event, name, (dict, str), prefix=prefix)
    label = f"{prefix}{name}"
    if isinstance(value, str):
        return parse_s3_uri(value, field=label)
    bucket = validate_bucket(_string(value, "bucket", prefix=label + "."), field=label + ".bucket")
    return S3Uri(bucket, _key(value, "key", prefix=label + "."))


def round_ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


# --- execution input / Plan --------------------------------------------------------------
SOURCES = ("images", "prefix", "manifest")
EXECUTION_KEYS = (*SOURCES, "batch_id", "score", "iou", "resize")


@dataclass(frozen=True)
class ExecutionInput:
    """Exactly one of ``images`` / ``prefix`` / ``manifest``; thresholds optional."""

    images: tuple[str, ...] | None = None
    prefix: str | None = None
    manifest: str | None = None
    batch_id: str | None = None
    score: float | None = None
    iou: float | None = None
    resize: str | None = None

    @classmethod
    def from_event(cls, event: Any) -> ExecutionInput:
        event = _obj(event, "execution input")
        unknown = sorted(set(event) - set(EXECUTION_KEYS))
        if unknown:
            raise InputValidationError(
                f"{unknown[0]}: unknown execution input field (expected one of {EXECUTION_KEYS})")
        given = [s for s in SOURCES if event.get(s) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(given)
            raise InputValidationError(
                f"images|prefix|manifest: give exactly one image source, got {what}")
        images = None
        if "images" in given:
            raw = _field(event, "images", list)
            if not raw:
                raise InputValidationError("images: must be a non-empty array of s3:// URIs")
            for i, uri in enumerate(raw):
                parse_s3_uri(uri, field=f"images[{i}]")
            images = tuple(raw)
        prefix = manifest = None
        if "prefix" in given:
            prefix = _string(event, "prefix")
            parse_s3_uri(prefix, field="prefix", allow_empty_key=True)
        if "manifest" in given:
            manifest = _string(event, "manifest")
            parse_s3_uri(manifest, field="manifest")
        return cls(images=images, prefix=prefix, manifest=manifest,
                   batch_id=_batch_id(event, default=None),
                   score=_fraction(event, "score", default=None),
                   iou=_fraction(event, "iou", default=None),
                   resize=_resize(event, default=None))

    def to_dict(self) -> dict:
        d = {"images": list(self.images) if self.images is not None else None,
             "prefix": self.prefix, "manifest": self.manifest, "batch_id": self.batch_id,
             "score": self.score, "iou": self.iou, "resize": self.resize}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class PlanEvent:
    """The Plan task's payload: ``{"input": <execution input>, "execution_name", "execution_arn"}``
    (what the ASL passes), or a bare execution input (direct invoke / ``events/plan_*.json``)."""

    input: ExecutionInput
    execution_name: str | None = None
    execution_arn: str | None = None

    @classmethod
    def from_event(cls, event: Any) -> PlanEvent:
        event = _obj(event, "plan event")
        if isinstance(event.get("input"), dict) and set(event) <= {
                "input", "execution_name", "execution_arn"}:
            return cls(ExecutionInput.from_event(event["input"]),
                       _field(event, "execution_name", str, default=None),
                       _field(event, "execution_arn", str, default=None))
        return cls(ExecutionInput.from_event(event))

    def to_dict(self) -> dict:
        d = {"input": self.input.to_dict()}
        if self.execution_name:
            d["execution_name"] = self.execution_name
        if self.execution_arn:
            d["execution_arn"] = self.execution_arn
        return d


@dataclass(frozen=True)
class Params:
    """Per-batch detection settings, resolved by Plan (input, then env, then defaults)."""

    score: float
    iou: float
    resize: str

    @classmethod
    def from_event(cls, event: Any, *, prefix: str = "params.") -> Params:
        event = _obj(event, prefix.rstrip("."))
        return cls(score=_fraction(event, "score", prefix=prefix),
                   iou=_fraction(event, "iou", prefix=prefix),
                   resize=_resize(event, prefix=prefix))

    def to_dict(self) -> dict:
        return {"score": self.score, "iou": self.iou, "resize": self.resize}


@dataclass(frozen=True)
class PlanResult:
    """Plan's output = the Map's input: ``items`` is the ItemReader manifest location."""

    batch_id: str
    items: S3Uri
    count: int
    submitted: int
    duplicates: int
    params: Params
    plan_uri: str = ""
    execution_arn: str = ""  # stamped on every record, so Summarize ignores older executions'
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Any) -> PlanResult:
        event = _obj(event, "plan result")
        return cls(batch_id=_batch_id(event), items=_s3_location(event, "items"),
                   count=_field(event, "count", int), submitted=_field(event, "submitted", int),
                   duplicates=_field(event, "duplicates", int, default=0),
                   params=Params.from_event(_field(event, "params", dict)),
                   plan_uri=_field(event, "plan_uri", str, default=""),
                   execution_arn=_field(event, "execution_arn", str, default=""),
                   timings_ms=_timings(event))

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "items": self.items.to_dict(), "count": self.count,
                "submitted": self.submitted, "duplicates": self.duplicates,
                "params": self.params.to_dict(), "plan_uri": self.plan_uri,
                "execution_arn": self.execution_arn, "timings_ms": dict(self.timings_ms)}


# --- per image ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageTask:
    """Preprocess input, built by the Map ItemSelector from one items-manifest entry.
    ``execution_arn``: the parent execution ("" when a stage is invoked directly)."""

    batch_id: str
    image_id: str
    uri: str
    params: Params
    execution_arn: str = ""

    @classmethod
    def _base(cls, event: Any, what: str) -> dict:
        event = _obj(event, what)
        uri = _string(event, "uri")
        parse_s3_uri(uri, field="uri")
        return {"batch_id": _batch_id(event), "image_id": _image_id(event), "uri": uri,
                "params": Params.from_event(_field(event, "params", dict)),
                "execution_arn": _field(event, "execution_arn", str, default="")}

    @classmethod
    def from_event(cls, event: Any) -> ImageTask:
        return cls(**cls._base(event, "preprocess event"))

    @property
    def s3(self) -> S3Uri:
        return parse_s3_uri(self.uri)

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else (
                dict(v) if isinstance(v, dict) else v)
        return out


@dataclass(frozen=True)
class Preprocessed(ImageTask):
    """Preprocess output / Infer input. ``input_key``: uint8 NHWC ``.npy`` in the artifacts
    bucket; ``transform``: :meth:`Transform.to_dict`; width/height: original pixels."""

    input_key: str = ""
    transform: dict = field(default_factory=dict)
    width: int = 0
    height: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def _base(cls, event: Any, what: str) -> dict:
        d = ImageTask._base(event, what)
        d.update(input_key=_key(event, "input_key"), transform=_field(event, "transform", dict),
                 width=_field(event, "width", int), height=_field(event, "height", int),
                 timings_ms=_timings(event))
        return d

    @classmethod
    def from_event(cls, event: Any) -> Preprocessed:
        return cls(**cls._base(event, "infer event"))


@dataclass(frozen=True)
class Inferred(Preprocessed):
    """Infer output / Postprocess input. ``heads_key``: ``.npz`` of compact heads
    (``rows_i`` int32 (n_i,) + ``head_i`` float32 (n_i, 5+C), see
    ``yolo_sfn.core.decode.compact_heads``) or full ``head_0..head_{n-1}`` float32
    (1, H, W, A*(5+C)), in model-metadata order; ``model``: name/precision/sha."""

    heads_key: str = ""
    model: dict = field(default_factory=dict)

    @classmethod
    def _base(cls, event: Any, what: str) -> dict:
        d = Preprocessed._base(event, what)
        d.update(heads_key=_key(event, "heads_key"), model=_field(event, "model", dict))
        return d

    @classmethod
    def from_event(cls, event: Any) -> Inferred:
        return cls(**cls._base(event, "postprocess event"))


@dataclass(frozen=True)
class Postprocessed(Inferred):
    """Postprocess output / Store input. ``detections_key``: JSON list of Detection dicts."""

    detections_key: str = ""
    num_detections: int = 0

    @classmethod
    def _base(cls, event: Any, what: str) -> dict:
        d = Inferred._base(event, what)
        d.update(detections_key=_key(event, "detections_key"),
                 num_detections=_field(event, "num_detections", int))
        return d

    @classmethod
    def from_event(cls, event: Any) -> Postprocessed:
        return cls(**cls._base(event, "store event"))


# --- failures ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CaughtError:
    """What a Step Functions ``Catch`` recorded: ``{"Error", "Cause"}``. For Lambda errors
    ``Cause`` is a JSON string ``{"errorType", "errorMessage", "stackTrace", ...}``."""

    type: str
    message: str

    @classmethod
    def from_event(cls, error: Any, *, prefix: str = "error.") -> CaughtError:
        error = _obj(error, prefix.rstrip("."))
        if "Error" not in error and "type" in error:  # already normalised
            return cls(_string(error, "type", prefix=prefix),
                       str(error.get("message") or "")[:MAX_ERROR_MESSAGE])
        etype = _field(error, "Error", str, prefix=prefix, default="") or ""
        cause = error.get("Cause")
        message = ""
        if isinstance(cause, str) and cause.strip():
            message = cause
            try:
                parsed = json.loads(cause)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                message = str(parsed.get("errorMessage") or parsed.get("message") or cause)
                etype = etype or str(parsed.get("errorType") or "")
        elif isinstance(cause, dict):
            message = str(cause.get("errorMessage") or json.dumps(cause))
            etype = etype or str(cause.get("errorType") or "")
        return cls(etype or "Unknown", message[:MAX_ERROR_MESSAGE])

    def to_dict(self) -> dict:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class FailureEvent:
    """RecordFailure input: any stage's input + ``stage`` (stamped by a Pass state) + ``error``
    (the Catch ``ResultPath``). Only the identity fields are required."""

    batch_id: str
    image_id: str
    uri: str
    stage: str
    error: CaughtError
    timings_ms: dict[str, float] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    model: dict = field(default_factory=dict)
    execution_arn: str = ""

    @classmethod
    def from_event(cls, event: Any) -> FailureEvent:
        event = _obj(event, "failure event")
        stage = _string(event, "stage")
        if stage not in STAGES:
            raise InputValidationError(f"stage: {stage!r} not in {STAGES}")
        return cls(batch_id=_batch_id(event), image_id=_image_id(event),
                   uri=_string(event, "uri"), stage=stage,
                   error=CaughtError.from_event(_field(event, "error", dict)),
                   timings_ms=_timings(event),
                   width=_field(event, "width", int, default=None),
                   height=_field(event, "height", int, default=None),
                   model=_field(event, "model", dict, default={}),
                   execution_arn=_field(event, "execution_arn", str, default=""))

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "image_id": self.image_id, "uri": self.uri,
                "stage": self.stage, "error": self.error.to_dict(),
                "timings_ms": dict(self.timings_ms), "width": self.width,
                "height": self.height, "model": dict(self.model),
                "execution_arn": self.execution_arn}


def is_failure_event(event: Any) -> bool:
    """The Store function serves both Store and RecordFailure: failure events carry ``error``."""
    return isinstance(event, dict) and event.get("error") is not None and "stage" in event


@dataclass(frozen=True)
class StoreResult:
    batch_id: str
    image_id: str
    uri: str
    status: str  # succeeded | failed
    result_uri: str
    num_detections: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: dict | None = None  # {"stage", "type", "message"}

    @classmethod
    def from_event(cls, event: Any) -> StoreResult:
        event = _obj(event, "store result")
        return cls(batch_id=_batch_id(event), image_id=_image_id(event),
                   uri=_string(event, "uri"), status=_string(event, "status"),
                   result_uri=_string(event, "result_uri"),
                   num_detections=_field(event, "num_detections", int),
                   timings_ms=_timings(event), error=_field(event, "error", dict, default=None))

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "image_id": self.image_id, "uri": self.uri,
                "status": self.status, "result_uri": self.result_uri,
                "num_detections": self.num_detections, "timings_ms": dict(self.timings_ms),
                "error": self.error}


# --- Summarize ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SummarizeEvent:
    """``{"batch_id", "items": {"bucket","key"}, "execution_arn"}``: Plan's output plus
    ``$$.Execution.Id``."""

    batch_id: str
    items: S3Uri
    execution_arn: str = ""

    @classmethod
    def from_event(cls, event: Any) -> SummarizeEvent:
        event = _obj(event, "summarize event")
        return cls(batch_id=_batch_id(event), items=_s3_location(event, "items"),
                   execution_arn=_field(event, "execution_arn", str, default=""))

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "items": self.items.to_dict(),
                "execution_arn": self.execution_arn}


@dataclass(frozen=True)
class SummarizeResult:
    """The execution output: counts and where the full summary is. ``failures`` holds at most
    ``MAX_FAILURES_IN_OUTPUT`` entries (``failures_truncated`` says when more exist)."""

    batch_id: str
    execution_arn: str
    submitted: int
    unique: int
    duplicates: int
    succeeded: int
    failed: int
    class_counts: dict[str, int]
    summary_uri: str
    results_prefix: str
    failures: list[dict] = field(default_factory=list)
    failures_truncated: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
