"""One frozen dataclass per state boundary: ``from_event(dict)`` validates, ``to_dict()``
produces what the next state receives. Only keys and small numbers cross a state (the
256 KiB Step Functions limit): tensors and detections live in S3.

Flow per execution::

    execution input --(PlanEvent)--> Plan --(PlanResult)--> DetectImages (Distributed Map)
      per child (ItemBatcher: BatchInput + up to BatchSize ItemSelector items)
        {"BatchInput", "Items"} --> Preprocess --> Batch --> Infer --> Batch
        --> Postprocess --> Batch --> Store --> ChildResult
      a stage that fails as a whole (after its retries): <that stage's input> + {"stage",
        "error": {"Error", "Cause"}} = BatchFailure --> RecordBatchFailure (Store) --> ChildResult
    PlanResult + execution id = SummarizeEvent --> Summarize --> SummarizeResult

One :class:`Batch` shape crosses every child state: it carries each image's small state
(:class:`ImageItem`: size, transform, per-image timings, per-image error) and the S3 keys of
the per-batch intermediates, so any stage's input is enough to record a failure. A per-image
error (decode, too large, missing, not allowed) stays on its item and never fails the batch.
Unknown keys in stage messages are ignored; unknown keys in the *execution input* are an
error (typo guard).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from yolo_sfn.contract import IMAGE_STAGES, RESIZE_CHOICES, UNKNOWN_STAGE
from yolo_sfn.errors import InputValidationError
from yolo_sfn.workflow.s3uri import S3Uri, parse_s3_uri, validate_bucket, validate_key

BATCH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # use .fullmatch
IMAGE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ERROR_MESSAGE = 2000
MAX_ITEM_ERROR_MESSAGE = 1000  # per image inside a batch message (the 256 KiB payload bound)
MAX_BATCH_ITEMS = 30  # template.yaml BatchSize MaxValue
CHILD_ID_HEX = 16
CHILD_ID_RE = re.compile(r"[0-9a-f]{16}")  # child_id_for; use .fullmatch
FAILURE_STAGES = (*IMAGE_STAGES, UNKNOWN_STAGE)  # what an image failure may name

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
    if value is not None and value not in RESIZE_CHOICES:
        raise InputValidationError(f"{prefix}{name}: {value!r} not in {RESIZE_CHOICES}")
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


def _timings(event: dict, *, prefix: str = "", name: str = "timings_ms") -> dict[str, float]:
    raw = _field(event, name, dict, prefix=prefix, default={})
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InputValidationError(f"{prefix}{name}.{k}: expected a finite number")
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
    """Per-batch detection settings, resolved by Plan (input, then env, then defaults).
    ``resize`` is ``"stretch"`` or ``"letterbox"``; ``"model"`` (the model's own) only when
    Plan had no model to ask, and Preprocess resolves it."""

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
    model_ref: ModelRef | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Any) -> PlanResult:
        event = _obj(event, "plan result")
        ref = event.get("model_ref")
        return cls(batch_id=_batch_id(event), items=_s3_location(event, "items"),
                   count=_field(event, "count", int), submitted=_field(event, "submitted", int),
                   duplicates=_field(event, "duplicates", int, default=0),
                   params=Params.from_event(_field(event, "params", dict)),
                   plan_uri=_field(event, "plan_uri", str, default=""),
                   execution_arn=_field(event, "execution_arn", str, default=""),
                   model_ref=ModelRef.from_event(ref) if ref else None,
                   timings_ms=_timings(event))

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "items": self.items.to_dict(), "count": self.count,
                "submitted": self.submitted, "duplicates": self.duplicates,
                "params": self.params.to_dict(), "plan_uri": self.plan_uri,
                "execution_arn": self.execution_arn,
                "model_ref": self.model_ref.to_dict() if self.model_ref else None,
                "timings_ms": dict(self.timings_ms)}


# --- per child (one ItemBatcher batch) ---------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """The model version Plan pinned for the whole execution: ``version`` / ``meta_version``
    are the ETags (local files: mtime-size) of ``uri`` and its ``.json`` sidecar. Stages load
    exactly these versions once per container and need no HEAD per invoke."""

    uri: str
    version: str
    meta_version: str

    @classmethod
    def from_event(cls, event: Any, *, prefix: str = "model_ref.") -> ModelRef:
        event = _obj(event, prefix.rstrip("."))
        return cls(uri=_string(event, "uri", prefix=prefix),
                   version=_field(event, "version", str, prefix=prefix, default=""),
                   meta_version=_field(event, "meta_version", str, prefix=prefix, default=""))

    def to_dict(self) -> dict:
        return {"uri": self.uri, "version": self.version, "meta_version": self.meta_version}


@dataclass(frozen=True)
class ImageItem:
    """One image's state inside a batch message. ``error`` (``{"stage","type","message"}``,
    the message cut to ``MAX_ITEM_ERROR_MESSAGE``) marks it done: later stages skip it and
    Store records it as failed. ``timings_ms``: what each stage spent on this image alone."""

    image_id: str
    uri: str
    width: int | None = None
    height: int | None = None
    transform: dict | None = None  # Transform.to_dict()
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_event(cls, event: Any, *, prefix: str = "items[].") -> ImageItem:
        event = _obj(event, prefix.rstrip("."))
        uri = _string(event, "uri", prefix=prefix)
        error = _field(event, "error", dict, prefix=prefix, default=None)
        if error is not None:
            error = item_error(str(error.get("stage") or "unknown"),
                               str(error.get("type") or "Unknown"), str(error.get("message") or ""))
        return cls(image_id=_image_id(event, prefix=prefix), uri=uri,
                   width=_field(event, "width", int, prefix=prefix, default=None),
                   height=_field(event, "height", int, prefix=prefix, default=None),
                   transform=_field(event, "transform", dict, prefix=prefix, default=None),
                   timings_ms=_timings(event, prefix=prefix), error=error)

    def to_dict(self) -> dict:
        d = {"image_id": self.image_id, "uri": self.uri, "width": self.width,
             "height": self.height, "transform": self.transform,
             "timings_ms": dict(self.timings_ms), "error": self.error}
        return {k: v for k, v in d.items() if v is not None}


def item_error(stage: str, etype: str, message: str) -> dict:
    """A per-image error record, small enough to travel in a batch message."""
    return {"stage": stage if stage in FAILURE_STAGES else UNKNOWN_STAGE, "type": etype,
            "message": message[:MAX_ITEM_ERROR_MESSAGE]}


def child_id_for(image_ids: list[str] | tuple[str, ...]) -> str:
    """Deterministic id of one batch (child): the same images give the same id, so a rerun
    of an EXPRESS child (at least once) writes the same keys."""
    return hashlib.sha1("\n".join(image_ids).encode("utf-8")).hexdigest()[:CHILD_ID_HEX]


@dataclass(frozen=True)
class Batch:
    """Every child stage's input and output.

    Parsed from the ItemBatcher envelope ``{"BatchInput": {"batch_id", "params",
    "execution_arn", "model_ref"}, "Items": [{"image_id", "uri"}, ...]}`` (Preprocess's input)
    or from the carried form :meth:`to_dict` (every later stage)::

        {"batch_id", "params", "execution_arn", "model_ref", "child_id",
         "items": [ImageItem...], "keys": {"inputs"|"heads"|"detections": s3 key},
         "model": {"name","precision","weights_sha256"}, "stage_ms": {stage: batch wall ms},
         "spans_ms": {stage: [start_epoch_ms, end_epoch_ms]}}

    ``keys`` names the per-batch intermediates written so far; ``stage_ms`` / ``spans_ms``
    are each stage invocation's wall time and span (the whole batch, not one image).
    """

    batch_id: str
    params: Params
    items: tuple[ImageItem, ...]
    child_id: str
    execution_arn: str = ""
    model_ref: ModelRef | None = None
    keys: dict[str, str] = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    spans_ms: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Any) -> Batch:
        event = _obj(event, "batch event")
        if "Items" in event or "BatchInput" in event:  # the ItemBatcher envelope
            head = _obj(event.get("BatchInput"), "BatchInput")
            raw_items, prefix = _field(event, "Items", list), "Items[]."
        else:
            head, raw_items, prefix = event, _field(event, "items", list), "items[]."
        if not raw_items:
            raise InputValidationError(f"{prefix[:-3]}: a batch needs at least one image")
        if len(raw_items) > MAX_BATCH_ITEMS:
            raise InputValidationError(
                f"{prefix[:-3]}: {len(raw_items)} images, at most {MAX_BATCH_ITEMS} per batch")
        items = tuple(ImageItem.from_event(it, prefix=prefix) for it in raw_items)
        ids = [it.image_id for it in items]
        if len(set(ids)) != len(ids):
            raise InputValidationError(f"{prefix[:-3]}: an image_id appears twice in one batch")
        ref = head.get("model_ref")
        child_id = _field(event, "child_id", str, default=None) or child_id_for(ids)
        if not CHILD_ID_RE.fullmatch(child_id):
            raise InputValidationError(f"child_id: {child_id[:100]!r} is not a child id")
        return cls(batch_id=_batch_id(head), params=Params.from_event(_field(head, "params", dict)),
                   items=items, child_id=child_id,
                   execution_arn=_field(head, "execution_arn", str, default=""),
                   model_ref=ModelRef.from_event(ref) if ref else None,
                   keys={k: validate_key(v, field=f"keys.{k}")
                         for k, v in _field(event, "keys", dict, default={}).items()},
                   model=_field(event, "model", dict, default={}),
                   stage_ms=_timings(event, name="stage_ms"),
                   spans_ms=_spans(event))

    @property
    def pending(self) -> tuple[ImageItem, ...]:
        """The images no stage has failed yet."""
        return tuple(it for it in self.items if it.ok)

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "params": self.params.to_dict(),
                "execution_arn": self.execution_arn,
                "model_ref": self.model_ref.to_dict() if self.model_ref else None,
                "child_id": self.child_id, "items": [it.to_dict() for it in self.items],
                "keys": dict(self.keys), "model": dict(self.model),
                "stage_ms": dict(self.stage_ms),
                "spans_ms": {k: list(v) for k, v in self.spans_ms.items()}}


def _spans(event: dict) -> dict[str, list[float]]:
    raw = _field(event, "spans_ms", dict, default={})
    out = {}
    for k, v in raw.items():
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, int | float)
                       or not math.isfinite(x) for x in v)):
            raise InputValidationError(f"spans_ms.{k}: expected [start_ms, end_ms]")
        out[str(k)] = [float(v[0]), float(v[1])]
    return out


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
class BatchFailure:
    """RecordBatchFailure input: the failed stage's input (a :class:`Batch`, or the ItemBatcher
    envelope when Preprocess failed) + ``stage`` (stamped by a Pass state) + ``error`` (the
    Catch's ``ResultPath``). Every still-pending image is recorded as failed at ``stage``."""

    batch: Batch
    stage: str
    error: CaughtError

    @classmethod
    def from_event(cls, event: Any) -> BatchFailure:
        event = _obj(event, "failure event")
        stage = _string(event, "stage")
        if stage not in FAILURE_STAGES:
            raise InputValidationError(f"stage: {stage!r} not in {FAILURE_STAGES}")
        rest = {k: v for k, v in event.items() if k not in ("stage", "error")}
        return cls(Batch.from_event(rest), stage,
                   CaughtError.from_event(_field(event, "error", dict)))

    def to_dict(self) -> dict:
        return {**self.batch.to_dict(), "stage": self.stage, "error": self.error.to_dict()}


def is_failure_event(event: Any) -> bool:
    """The Store function serves both Store and RecordBatchFailure: failure events carry
    ``error`` and ``stage``."""
    return isinstance(event, dict) and event.get("error") is not None and "stage" in event


@dataclass(frozen=True)
class ChildResult:
    """What Store / RecordBatchFailure return: counts only (the ASL discards it with
    ``OutputPath: null``, so the Map's gathered output stays ``{}`` per child)."""

    batch_id: str
    child_id: str
    size: int
    succeeded: int
    failed: int

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "child_id": self.child_id, "size": self.size,
                "succeeded": self.succeeded, "failed": self.failed}


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
