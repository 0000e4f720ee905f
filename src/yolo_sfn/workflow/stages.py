"""Pure stage cores: typed message in, typed message out, S3/DynamoDB through optional
clients. The Lambda handlers in ``functions/<stage>/app.py`` only parse and delegate here,
and the local runner calls the same handlers, so both paths run this code.

Artifacts bucket layout (``cfg.bucket``)::

    batches/<batch_id>/items.json          ItemReader manifest: [{"image_id","uri","bucket","key"}]
    batches/<batch_id>/plan.json           submitted/unique/duplicates/params (for Summarize)
    tmp/<batch_id>/<image_id>/input.npy    uint8 (1, h, w, 3) network input      (expires)
    tmp/<batch_id>/<image_id>/heads.npz    compact heads: rows_i int32 (n_i,) + head_i float32
                                           (n_i, 5+C), the rows at objectness >= score; or,
                                           when most rows pass, head_0.. (1, H, W, A*(5+C))
    tmp/<batch_id>/<image_id>/detections.json                                     (expires)
    results/<batch_id>/<image_id>.json     per-image result
    results/<batch_id>/summary.json        batch summary
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from time import perf_counter

from yolo_sfn.errors import InputValidationError, ModelError, ObjectNotFoundError, S3UriError
from yolo_sfn.workflow import aws, io, models
from yolo_sfn.workflow.config import BATCHES_PREFIX, StageConfig
from yolo_sfn.workflow.messages import (
    CaughtError,
    FailureEvent,
    ImageTask,
    Inferred,
    Params,
    PlanEvent,
    PlanResult,
    Postprocessed,
    Preprocessed,
    StoreResult,
    SummarizeEvent,
    SummarizeResult,
    round_ms,
)
from yolo_sfn.workflow.s3uri import (
    S3Uri,
    check_allowed,
    format_s3_uri,
    parse_s3_uri,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pbm",
                    ".pgm", ".ppm")
MAX_MANIFEST_BYTES = 50 * 1024 * 1024
MANIFESTS_PREFIX = "manifests/"  # s3://<artifacts>/manifests/: where `yolo-sfn submit` writes
MAX_FAILURES_IN_OUTPUT = 25
MAX_CLASSES_IN_OUTPUT = 200
IMAGE_ID_HEX = 20


# --- ids and keys --------------------------------------------------------------------------
def image_id_for(uri: str) -> str:
    """Deterministic id from the canonical ``s3://`` URI: a rerun overwrites the same result."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:IMAGE_ID_HEX]


def batch_id_from_name(name: str | None) -> str:
    """An execution name made safe for S3 keys and DynamoDB, or a fresh time-based id."""
    if name:
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._")[:80]
        if safe:
            return safe
    return time.strftime("batch-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def items_key(batch_id: str) -> str:
    return f"{BATCHES_PREFIX}{batch_id}/items.json"


def plan_key(batch_id: str) -> str:
    return f"{BATCHES_PREFIX}{batch_id}/plan.json"


def tmp_key(cfg: StageConfig, batch_id: str, image_id: str, name: str) -> str:
    return f"{cfg.intermediate_prefix}{batch_id}/{image_id}/{name}"


def result_key(cfg: StageConfig, batch_id: str, image_id: str) -> str:
    return f"{cfg.results_prefix}{batch_id}/{image_id}.json"


def summary_key(cfg: StageConfig, batch_id: str) -> str:
    return f"{cfg.results_prefix}{batch_id}/summary.json"


# --- Plan ----------------------------------------------------------------------------------
def parse_manifest(text: str, *, name: str = "manifest") -> list[tuple[str, str]]:
    """Manifest body -> ``[(uri, field_label)]``.

    ``[...]``: a JSON array of URI strings (or ``{"uri": ...}`` objects). Otherwise one URI
    per line; a ``.csv`` name reads the first column and skips a header row. Blank lines and
    ``#`` comments are skipped. URIs are returned unvalidated (the caller names the line).
    """
    body = text.lstrip("\ufeff")
    if body.lstrip().startswith("["):
        try:
            arr = json.loads(body)
        except ValueError as e:
            raise InputValidationError(f"manifest: invalid JSON array ({e})") from None
        except RecursionError:  # deeply nested arrays: json.loads recurses per level
            raise InputValidationError("manifest: JSON nested too deeply") from None
        if not isinstance(arr, list):
            raise InputValidationError("manifest: expected a JSON array of s3:// URIs")
        out = []
        for i, v in enumerate(arr):
            if isinstance(v, dict):
                v = v.get("uri")
            out.append((v, f"manifest[{i}]"))
        return out
    if name.lower().endswith(".csv"):
        try:  # splitlines(): CR-only (classic Mac/Excel) exports are lines too
            rows = [(row[0].strip() if row else "", n)
                    for n, row in enumerate(csv.reader(body.splitlines()), start=1)]
        except csv.Error as e:
            raise InputValidationError(f"manifest {name}: unreadable CSV ({e})") from None
        if rows and rows[0][0] and not rows[0][0].startswith("s3://"):
            rows = rows[1:]  # header
    else:
        rows = [(line.strip(), n) for n, line in enumerate(body.splitlines(), start=1)]
    return [(v, f"manifest line {n}") for v, n in rows if v and not v.startswith("#")]


def _prefix_allowed(loc: S3Uri, cfg: StageConfig) -> None:
    key = loc.key
    for entry in cfg.input_buckets:
        if entry.bucket == loc.bucket and (key.startswith(entry.prefix)
                                           or entry.prefix.startswith(key)):
            return
    check_allowed(loc, cfg.input_buckets, field="prefix")  # raises with the allow-list


def _list_prefix(loc: S3Uri, cfg: StageConfig, s3) -> tuple[list[tuple[str, str]], int]:
    """Image objects under the prefix (paginated); returns (uris, skipped non-images)."""
    _prefix_allowed(loc, cfg)
    out, skipped = [], 0
    with io.s3_errors(loc.bucket, loc.key, "list"):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                uri = S3Uri(loc.bucket, key)
                if (not key.lower().endswith(IMAGE_EXTENSIONS)
                        or not any(e.allows(uri) for e in cfg.input_buckets)):
                    skipped += 1
                    continue
                out.append((str(uri), f"prefix object {key!r}"))
    if not out:
        raise InputValidationError(f"prefix: no image objects under {loc} "
                                   f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    return out, skipped


def _collect(event: PlanEvent, cfg: StageConfig, s3) -> tuple[list[tuple[str, str]], int]:
    inp = event.input
    if inp.images is not None:
        return [(u, f"images[{i}]") for i, u in enumerate(inp.images)], 0
    if inp.prefix is not None:
        return _list_prefix(parse_s3_uri(inp.prefix, field="prefix", allow_empty_key=True),
                            cfg, s3)
    loc = parse_s3_uri(inp.manifest, field="manifest")
    if not (loc.bucket == cfg.bucket and loc.key.startswith(MANIFESTS_PREFIX)):
        check_allowed(loc, cfg.input_buckets, field="manifest")
    data = io.get_bytes(loc.bucket, loc.key, s3=s3, max_bytes=MAX_MANIFEST_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputValidationError(f"manifest: {loc} is not UTF-8 text") from None
    entries = parse_manifest(text, name=loc.key)
    if not entries:
        raise InputValidationError(f"manifest: {loc} lists no image URIs")
    return entries, 0


def plan(event: PlanEvent, cfg: StageConfig, *, s3=None) -> PlanResult:
    """Validate the execution input, expand it, de-duplicate, write the items manifest."""
    t0 = perf_counter()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    inp = event.input
    batch_id = inp.batch_id or batch_id_from_name(event.execution_name)
    params = Params(score=cfg.score if inp.score is None else inp.score,
                    iou=cfg.iou if inp.iou is None else inp.iou,
                    resize=inp.resize or cfg.resize)
    entries, skipped = _collect(event, cfg, s3)
    items, seen, duplicates = [], set(), []
    for raw, label in entries:
        # syntax errors reject the batch; an image outside INPUT_BUCKETS is left to
        # Preprocess, which records it as that image's failure (S3UriError)
        loc = parse_s3_uri(raw, field=label)
        uri = str(loc)
        if uri in seen:
            duplicates.append(uri)
            continue
        seen.add(uri)
        items.append({"image_id": image_id_for(uri), "uri": uri, "bucket": loc.bucket,
                      "key": loc.key})
    items_loc = S3Uri(cfg.bucket, items_key(batch_id))
    io.put_json(items_loc.bucket, items_loc.key, items, s3=s3)
    source = {k: v for k, v in (("prefix", inp.prefix), ("manifest", inp.manifest)) if v}
    plan_doc = {"batch_id": batch_id, "execution_arn": event.execution_arn or "",
                "source": source or {"images": len(inp.images or ())},
                "submitted": len(entries), "unique": len(items), "duplicates": duplicates,
                "skipped_non_images": skipped, "params": params.to_dict(),
                "items_uri": str(items_loc),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    plan_uri = io.put_json(cfg.bucket, plan_key(batch_id), plan_doc, s3=s3)
    return PlanResult(batch_id=batch_id, items=items_loc, count=len(items),
                      submitted=len(entries), duplicates=len(duplicates), params=params,
                      plan_uri=plan_uri, execution_arn=event.execution_arn or "",
                      timings_ms={"plan": round_ms(perf_counter() - t0)})


# --- per-image stages ----------------------------------------------------------------------
def _with_timing(msg, stage: str, t0: float) -> dict:
    return {**msg.timings_ms, stage: round_ms(perf_counter() - t0)}


def preprocess(task: ImageTask, cfg: StageConfig, *, s3=None) -> Preprocessed:
    """S3 image -> decode -> resize -> uint8 NHWC ``input.npy`` in the artifacts bucket."""
    from yolo_sfn.core.image import decode_image
    from yolo_sfn.core.preprocess import preprocess as make_input

    t0 = perf_counter()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    loc = task.s3
    check_allowed(loc, cfg.input_buckets, field="uri")  # Plan leaves this per image
    data = io.get_bytes(loc.bucket, loc.key, s3=s3, max_bytes=cfg.max_image_bytes)
    rgb = decode_image(data, name=task.uri, max_pixels=cfg.max_image_pixels)  # (H, W, 3) uint8
    meta = models.load_meta(cfg.model_uri, s3=s3)
    batch, transform = make_input(rgb, tuple(meta.input_size), mode=task.params.resize)
    key = tmp_key(cfg, task.batch_id, task.image_id, "input.npy")
    io.put_npy(cfg.bucket, key, batch, s3=s3)  # (1, h, w, 3) uint8
    base = {f.name: getattr(task, f.name) for f in fields(ImageTask)}
    return Preprocessed(**base, input_key=key, transform=transform.to_dict(),
                        width=int(rgb.shape[1]), height=int(rgb.shape[0]),
                        timings_ms={"preprocess": round_ms(perf_counter() - t0)})


COMPACT_MAX_FRACTION = 0.5  # above it (untrained weights) little is saved: full heads


def infer(msg: Preprocessed, cfg: StageConfig, *, s3=None, model=None) -> Inferred:
    """``input.npy`` -> Model.run -> ``heads.npz``: only the head rows whose objectness passes
    the batch's score (``yolo_sfn.core.decode.compact_heads``; Postprocess reads no others),
    so a trained YOLOv4-416 hands over KiB instead of 3.6 MB; the full heads when more than
    ``COMPACT_MAX_FRACTION`` of the rows pass or the score is 0."""
    from yolo_sfn.core.decode import compact_heads

    t0 = perf_counter()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    if model is None:
        cfg.require("model_uri")
        model = models.get_model(cfg.model_uri, cfg.model_cache_dir,
                                 threads=cfg.infer_threads, s3=s3)
    batch = io.get_npy(cfg.bucket, msg.input_key, s3=s3)
    heads = model.run(batch)
    t0 += model.last_wait_s  # local runs share one model across Map threads: not our work
    key = tmp_key(cfg, msg.batch_id, msg.image_id, "heads.npz")
    meta = model.meta
    arrays = compact_heads(heads, meta, msg.params.score, max_fraction=COMPACT_MAX_FRACTION)
    if arrays is None:  # most rows pass (untrained weights), or score 0: the full heads
        arrays = {f"head_{i}": h for i, h in enumerate(heads)}
    io.put_npz(cfg.bucket, key, arrays, s3=s3)
    return Inferred(**_fields(msg), heads_key=key,
                    model={"name": meta.name, "precision": meta.precision,
                           "weights_sha256": meta.weights_sha256},
                    timings_ms=_with_timing(msg, "infer", t0))


def _fields(msg, *, exclude: tuple[str, ...] = ("timings_ms",)) -> dict:
    return {f.name: getattr(msg, f.name) for f in fields(msg) if f.name not in exclude}


def postprocess(msg: Inferred, cfg: StageConfig, *, s3=None, meta=None) -> Postprocessed:
    """``heads.npz`` + metadata + transform -> detections JSON (original-image pixels).
    Reads compact heads (Infer's) or full ``head_0..`` heads."""
    from yolo_sfn.core.decode import expand_heads, is_compact
    from yolo_sfn.core.postprocess import postprocess as decode_and_nms
    from yolo_sfn.core.preprocess import Transform

    t0 = perf_counter()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    if meta is None:
        meta = models.load_meta(cfg.require("model_uri").model_uri, s3=s3)
    npz = io.get_npz(cfg.bucket, msg.heads_key, s3=s3)
    try:
        transform = Transform.from_dict(msg.transform)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputValidationError(f"transform: malformed ({type(e).__name__}: {e})") from None
    if is_compact(npz):
        try:
            heads = expand_heads(npz, meta)
        except (ModelError, KeyError) as e:
            raise InputValidationError(f"heads_key: {msg.heads_key} does not fit model "
                                       f"{meta.name!r} ({e})") from None
    else:
        heads = [npz[f"head_{i}"] for i in range(len(npz))]
    if len(heads) != len(meta.heads):
        raise InputValidationError(f"heads_key: {len(heads)} heads in {msg.heads_key}, "
                                   f"model {meta.name!r} has {len(meta.heads)}")
    dets = decode_and_nms(heads, meta, transform, score=msg.params.score, iou=msg.params.iou,
                          nms_kind=cfg.nms_kind)
    key = tmp_key(cfg, msg.batch_id, msg.image_id, "detections.json")
    io.put_json(cfg.bucket, key, [d.to_dict() for d in dets], s3=s3)
    return Postprocessed(**_fields(msg), detections_key=key, num_detections=len(dets),
                         timings_ms=_with_timing(msg, "postprocess", t0))


# --- Store / RecordFailure -----------------------------------------------------------------
def _ddb_value(v):
    """Python -> DynamoDB attribute value (floats as Decimal, None as NULL)."""
    from boto3.dynamodb.types import TypeSerializer

    def fix(x):
        if isinstance(x, float):
            return Decimal(str(x))
        if isinstance(x, dict):
            return {str(k): fix(val) for k, val in x.items()}
        if isinstance(x, list | tuple):
            return [fix(val) for val in x]
        return x

    return TypeSerializer().serialize(fix(v))


@contextmanager
def _ddb_errors(what: str) -> Iterator[None]:
    """DynamoDB throttling/5xx/connection errors -> TransientS3Error (the retryable class)."""
    try:
        yield
    except Exception as e:
        mapped = io.map_error(e, what=what)
        if mapped is e:
            raise
        raise mapped from e


def _put_record(cfg: StageConfig, record: dict, ddb) -> None:
    item = {k: _ddb_value(v) for k, v in record.items()}
    with _ddb_errors(f"dynamodb put_item {cfg.table}"):
        ddb.put_item(TableName=cfg.table, Item=item)  # overwrite: idempotent per (batch, image)


def _write_result(cfg: StageConfig, result: dict, error: dict | None, *, s3, ddb) -> StoreResult:
    key = result_key(cfg, result["batch_id"], result["image_id"])
    result_uri = io.put_json(cfg.bucket, key, result, s3=s3)
    dets = result["detections"]
    counts = dict(Counter(d.get("label", str(d.get("class_id"))) for d in dets))
    _put_record(cfg, {
        "batch_id": result["batch_id"], "image_id": result["image_id"], "uri": result["uri"],
        "status": result["status"], "num_detections": len(dets), "class_counts": counts,
        "result_uri": result_uri, "timings_ms": result["timings_ms"], "error": error,
        "execution_arn": result["execution_arn"],
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, ddb)
    return StoreResult(batch_id=result["batch_id"], image_id=result["image_id"],
                       uri=result["uri"], status=result["status"], result_uri=result_uri,
                       num_detections=len(dets), timings_ms=result["timings_ms"], error=error)


def store(msg: Postprocessed, cfg: StageConfig, *, s3=None, ddb=None) -> StoreResult:
    """Write ``results/<batch>/<image>.json`` and one DynamoDB item (both overwrite)."""
    t0 = perf_counter()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    ddb = ddb or aws.client("dynamodb")
    dets = io.get_json(cfg.bucket, msg.detections_key, s3=s3)
    result = {"image_id": msg.image_id, "uri": msg.uri, "status": "succeeded",
              "width": msg.width, "height": msg.height, "detections": dets,
              "timings_ms": _with_timing(msg, "store", t0), "model": dict(msg.model),
              "error": None, "batch_id": msg.batch_id, "params": msg.params.to_dict(),
              "execution_arn": msg.execution_arn}
    return _write_result(cfg, result, None, s3=s3, ddb=ddb)


def record_failure(msg: FailureEvent, cfg: StageConfig, *, s3=None, ddb=None) -> StoreResult:
    """Failure path: the caught ``{"Error","Cause"}`` of ``msg.stage`` -> a failed record."""
    t0 = perf_counter()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    ddb = ddb or aws.client("dynamodb")
    error = {"stage": msg.stage, **msg.error.to_dict()}
    result = {"image_id": msg.image_id, "uri": msg.uri, "status": "failed",
              "width": msg.width, "height": msg.height, "detections": [],
              "timings_ms": _with_timing(msg, "store", t0), "model": dict(msg.model),
              "error": error, "batch_id": msg.batch_id, "execution_arn": msg.execution_arn}
    return _write_result(cfg, result, error, s3=s3, ddb=ddb)


def parse_cause(error: dict) -> CaughtError:
    """``{"Error", "Cause"}`` from a Step Functions Catch -> (type, message)."""
    return CaughtError.from_event(error)


# --- Summarize -----------------------------------------------------------------------------
# what build_summary reads from a record: Summarize queries only these attributes
SUMMARY_FIELDS = ("image_id", "status", "result_uri", "num_detections", "class_counts", "error",
                  "execution_arn")


def query_batch(cfg: StageConfig, batch_id: str, *, ddb=None,
                fields: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Every table item of the batch (paginated), keyed by image_id; with ``fields``, only
    those attributes (``image_id`` is always included)."""
    from boto3.dynamodb.types import TypeDeserializer

    ddb = ddb or aws.client("dynamodb")
    des = TypeDeserializer()
    out = {}
    kwargs = {}
    if fields:
        names = {f"#f{i}": f for i, f in enumerate(dict.fromkeys(("image_id", *fields)))}
        kwargs = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
    with _ddb_errors(f"dynamodb query {cfg.table}"):
        pages = ddb.get_paginator("query").paginate(
            TableName=cfg.table, KeyConditionExpression="batch_id = :b",
            ExpressionAttributeValues={":b": {"S": batch_id}}, ConsistentRead=True, **kwargs)
        for page in pages:
            for raw in page.get("Items", []):
                item = {k: des.deserialize(v) for k, v in raw.items()}
                out[item["image_id"]] = item
    return out


def plain(v):
    """A deserialized DynamoDB value with Decimals turned back into int/float (recursively)."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


MISSING_ERROR = {"stage": "unknown", "type": "MissingResult",
                 "message": "this execution recorded no result for this image (its iteration "
                            "failed before Store/RecordFailure)"}


def build_summary(batch_id: str, items: list[dict], records: dict[str, dict],
                  plan_doc: dict, execution_arn: str = "") -> dict:
    """Every item exactly once, in manifest order; items without a record (from this
    execution, when ``execution_arn`` is given) are failed."""
    images, classes = [], Counter()
    for it in items:
        rec = records.get(it["image_id"])
        if rec is not None and execution_arn and rec.get("execution_arn") != execution_arn:
            rec = None  # a previous execution's result: this one recorded nothing
        if rec is None:
            images.append({"image_id": it["image_id"], "uri": it["uri"], "status": "failed",
                           "result_uri": None, "num_detections": 0,
                           "error": dict(MISSING_ERROR)})
            continue
        rec = plain(rec)
        ok = rec.get("status") == "succeeded"
        if ok:
            classes.update(rec.get("class_counts") or {})
        images.append({"image_id": it["image_id"], "uri": it["uri"],
                       "status": "succeeded" if ok else "failed",
                       "result_uri": rec.get("result_uri"),
                       "num_detections": int(rec.get("num_detections") or 0),
                       "error": None if ok else (rec.get("error") or {
                           "stage": "unknown", "type": "Unknown", "message": ""})})
    succeeded = sum(1 for i in images if i["status"] == "succeeded")
    return {"batch_id": batch_id, "submitted": int(plan_doc.get("submitted", len(items))),
            "unique": len(items), "duplicates": list(plan_doc.get("duplicates", [])),
            "succeeded": succeeded, "failed": len(images) - succeeded,
            "class_counts": dict(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))),
            "images": images}


def summarize(msg: SummarizeEvent, cfg: StageConfig, *, s3=None, ddb=None) -> SummarizeResult:
    """Items manifest + table -> ``results/<batch>/summary.json``; returns only counts."""
    t0 = perf_counter()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    items = io.get_json(msg.items.bucket, msg.items.key, s3=s3)
    if not isinstance(items, list):
        raise InputValidationError(f"items: {msg.items} is not a JSON array")
    try:
        plan_doc = io.get_json(cfg.bucket, plan_key(msg.batch_id), s3=s3)
    except ObjectNotFoundError:
        plan_doc = {}
    records = query_batch(cfg, msg.batch_id, ddb=ddb, fields=SUMMARY_FIELDS)
    summary = build_summary(msg.batch_id, items, records, plan_doc, msg.execution_arn)
    s_key = summary_key(cfg, msg.batch_id)
    summary_uri = format_s3_uri(cfg.bucket, s_key)
    results_prefix = format_s3_uri(cfg.bucket, f"{cfg.results_prefix}{msg.batch_id}/")
    summary = {"batch_id": msg.batch_id,
               "execution_arn": msg.execution_arn or plan_doc.get("execution_arn", ""),
               **{k: v for k, v in summary.items() if k != "batch_id"},
               "summary_uri": summary_uri, "results_prefix": results_prefix}
    summary["images"] = summary.pop("images")  # keep the long list last
    io.put_json(cfg.bucket, s_key, summary, s3=s3)
    failures = [i for i in summary["images"] if i["status"] == "failed"]
    top_classes = dict(list(summary["class_counts"].items())[:MAX_CLASSES_IN_OUTPUT])
    return SummarizeResult(
        batch_id=msg.batch_id, execution_arn=summary["execution_arn"],
        submitted=summary["submitted"], unique=summary["unique"],
        duplicates=len(summary["duplicates"]), succeeded=summary["succeeded"],
        failed=summary["failed"], class_counts=top_classes, summary_uri=summary_uri,
        results_prefix=results_prefix,
        failures=[{"image_id": f["image_id"], "uri": f["uri"], "error": f["error"]}
                  for f in failures[:MAX_FAILURES_IN_OUTPUT]],
        failures_truncated=len(failures) > MAX_FAILURES_IN_OUTPUT,
        timings_ms={"summarize": round_ms(perf_counter() - t0)})


__all__ = ["S3UriError", "image_id_for", "infer", "parse_manifest", "plan", "postprocess",
           "preprocess", "record_failure", "store", "summarize"]
