"""Stage configuration: explicit argument, then the environment (names in
:mod:`yolo_sfn.env`), then the defaults below."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from yolo_sfn import env
from yolo_sfn.contract import (
    INTERMEDIATE_PREFIX,
    NMS_KINDS,
    RESIZE_CHOICES,
    RESIZE_FROM_MODEL,
    RESULTS_PREFIX,
    as_prefix,
)
from yolo_sfn.errors import InputValidationError
from yolo_sfn.workflow.s3uri import AllowEntry, parse_allow_list, validate_bucket

DEFAULT_SCORE = 0.25
DEFAULT_IOU = 0.45
DEFAULT_RESIZE = RESIZE_FROM_MODEL  # letterbox for letter_box models, else stretch
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MODEL_CACHE_DIR = "/tmp/yolo-sfn-models"


def _number(environ: Mapping[str, str], name: str, default, kind=float):
    raw = environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InputValidationError(f"environment {name}: not a number: {raw!r}") from None


@dataclass(frozen=True)
class StageConfig:
    """What the stages read from the Lambda environment (``template.yaml`` Globals)."""

    bucket: str = ""
    table: str = ""
    model_uri: str = ""
    score: float = DEFAULT_SCORE
    iou: float = DEFAULT_IOU
    resize: str = DEFAULT_RESIZE
    nms_kind: str | None = None  # None: the model's own (darknet cfg nms_kind)
    input_buckets: tuple[AllowEntry, ...] = field(default_factory=tuple)
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    infer_threads: int | None = None
    model_cache_dir: str = DEFAULT_MODEL_CACHE_DIR
    intermediate_prefix: str = INTERMEDIATE_PREFIX
    results_prefix: str = RESULTS_PREFIX

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> StageConfig:
        e = os.environ if environ is None else environ
        nms = e.get(env.NMS_KIND, "").strip() or None
        if nms is not None and nms not in NMS_KINDS:
            raise InputValidationError(f"environment {env.NMS_KIND}: {nms!r} not in {NMS_KINDS}")
        resize = e.get(env.RESIZE_MODE, "").strip() or DEFAULT_RESIZE
        if resize not in RESIZE_CHOICES:
            raise InputValidationError(
                f"environment {env.RESIZE_MODE}: {resize!r} not in {RESIZE_CHOICES}")
        threads = _number(e, env.INFER_THREADS, 0, int)
        cfg = cls(
            bucket=e.get(env.BUCKET, "").strip(),
            table=e.get(env.TABLE, "").strip(),
            model_uri=e.get(env.MODEL_URI, "").strip(),
            score=_number(e, env.SCORE_THRESHOLD, DEFAULT_SCORE),
            iou=_number(e, env.IOU_THRESHOLD, DEFAULT_IOU),
            resize=resize,
            nms_kind=nms,
            input_buckets=parse_allow_list(e.get(env.INPUT_BUCKETS, "")),
            max_image_bytes=_number(e, env.MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_BYTES, int),
            max_image_pixels=_number(e, env.MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS, int),
            infer_threads=threads if threads > 0 else None,
            model_cache_dir=e.get(env.MODEL_CACHE_DIR, "").strip() or DEFAULT_MODEL_CACHE_DIR,
            intermediate_prefix=as_prefix(
                e.get(env.INTERMEDIATE_PREFIX, INTERMEDIATE_PREFIX)),
            results_prefix=as_prefix(e.get(env.RESULTS_PREFIX, RESULTS_PREFIX)),
        )
        return replace(cfg, **overrides) if overrides else cfg

    def require(self, *names: str) -> StageConfig:
        """Raise naming the environment variable when a needed setting is empty."""
        env_names = {"bucket": env.BUCKET, "table": env.TABLE, "model_uri": env.MODEL_URI}
        for name in names:
            if not getattr(self, name):
                raise InputValidationError(f"environment {env_names.get(name, name)} is not set")
        if "bucket" in names:
            validate_bucket(self.bucket, field=f"environment {env.BUCKET}")
        return self
