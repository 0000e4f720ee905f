"""Pure stage cores: typed message in, typed message out, S3/DynamoDB through optional
clients. The Lambda handlers in ``functions/<stage>/app.py`` only parse and delegate here,
and the local runner calls the same handlers, so both paths run this code.

Artifacts bucket layout (``cfg.bucket``)::

    batches/<batch_id>/items.json          ItemReader manifest: [{"image_id","uri","bucket","key"}]
    batches/<batch_id>/plan.json           submitted/unique/duplicates/params (for Summarize)
    tmp/<batch_id>/<child_id>/inputs.npz   image_ids (n,) str + inputs (n, h, w, 3) uint8,
                                           the batch's pending images in item order (expires)
    tmp/<batch_id>/<child_id>/heads.npz    per image "<image_id>.<name>": compact heads
                                           rows_i int32 (n_i,) + head_i float32 (n_i, 5+C),
                                           the rows at objectness >= score; or, when most
                                           rows pass, head_0.. (1, H, W, A*(5+C))  (expires)
    tmp/<batch_id>/<child_id>/detections.json  {image_id: [Detection.to_dict()]}  (expires)
    results/<batch_id>/<image_id>.json     per-image result
    results/<batch_id>/summary.json        batch summary
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from time import perf_counter

from botocore.exceptions import ClientError

from yolo_sfn.contract import (
    BATCHES_PREFIX,
    IMAGE_EXTENSIONS,
    INTERMEDIATES,
    MANIFESTS_PREFIX,
    RESIZE_FROM_MODEL,
    intermediate_key,
    resolve_resize,
    result_key_in,
    summary_key_in,
)
from yolo_sfn.errors import (
    InputValidationError,
    ModelError,
    ObjectNotFoundError,
    S3UriError,
    TransientAwsError,
    YoloSfnError,
)
from yolo_sfn.workflow import aws, batchlock, model_cache, storage
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.messages import (
    Batch,
    BatchFailure,
    CaughtError,
    ChildResult,
    ImageItem,
    ModelRef,
    Params,
    PlanEvent,
    PlanResult,
    SummarizeEvent,
    SummarizeResult,
    item_error,
    round_ms,
)
from yolo_sfn.workflow.s3uri import (
    S3Uri,
    check_allowed,
    format_s3_uri,
    parse_s3_uri,
)

MAX_MANIFEST_BYTES = 50 * 1024 * 1024
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


def tmp_key(cfg: StageConfig, batch_id: str, child_id: str, name: str) -> str:
    """A per-batch intermediate: deterministic, so a rerun child overwrites its own files."""
    return intermediate_key(cfg.intermediate_prefix, batch_id, child_id, name)


def result_key(cfg: StageConfig, batch_id: str, image_id: str) -> str:
    return result_key_in(cfg.results_prefix, batch_id, image_id)


def summary_key(cfg: StageConfig, batch_id: str) -> str:
    return summary_key_in(cfg.results_prefix, batch_id)


# --- Plan ----------------------------------------------------------------------------------
def parse_manifest(text: str, *, name: str = "manifest") -> list[tuple[str, str]]:
    """Manifest body -> ``[(uri, field_label)]``.

    ``[...]``: a JSON array of URI strings (or ``{"uri": ...}`` objects). Otherwise one URI
    per line; a ``.csv`` name reads the first column and skips a header row (a first cell
without ``/``). Blank lines and
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
        if rows and rows[0][0] and "/" not in rows[0][0]:
            rows = rows[1:]  # a header (`uri`, `s3_uri`, ...); a path-like first row (even a
            # malformed one, `S3://b/x.jpg`) is data, validated and named like every other
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
    with storage.s3_errors(loc.bucket, loc.key, "list"):
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
    data = storage.get_bytes(loc.bucket, loc.key, s3=s3, max_bytes=MAX_MANIFEST_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputValidationError(f"manifest: {loc} is not UTF-8 text") from None
    entries = parse_manifest(text, name=loc.key)
    if not entries:
        raise InputValidationError(f"manifest: {loc} lists no image URIs")
    return entries, 0


def plan(event: PlanEvent, cfg: StageConfig, *, s3=None, ddb=None, sfn=None) -> PlanResult:
    """Validate the execution input, expand it, de-duplicate, take the batch id's lock (an
    execution, i.e. ``event.execution_arn``, with a results table: ``batchlock``), write the
    items manifest."""
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
    if cfg.table and event.execution_arn:  # before the first write under the batch id
        batchlock.acquire(cfg.table, batch_id, event.execution_arn,
                          ddb=ddb or aws.client("dynamodb"),
                          sfn=sfn or aws.client("stepfunctions"))
    items_loc = S3Uri(cfg.bucket, items_key(batch_id))
    storage.put_json(items_loc.bucket, items_loc.key, items, s3=s3)
    ref = None
    if cfg.model_uri:  # one model version for the whole execution, checked before any child
        ref = ModelRef(cfg.model_uri, *model_cache.pin(cfg.model_uri, s3=s3))
        if params.resize == RESIZE_FROM_MODEL:
            params = _resize_of_model(params, ref, s3)
    source = {k: v for k, v in (("prefix", inp.prefix), ("manifest", inp.manifest)) if v}
    plan_doc = {"batch_id": batch_id, "execution_arn": event.execution_arn or "",
                "source": source or {"images": len(inp.images or ())},
                "submitted": len(entries), "unique": len(items), "duplicates": duplicates,
                "skipped_non_images": skipped, "params": params.to_dict(),
                "items_uri": str(items_loc),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    plan_uri = storage.put_json(cfg.bucket, plan_key(batch_id), plan_doc, s3=s3)
    return PlanResult(batch_id=batch_id, items=items_loc, count=len(items),
                      submitted=len(entries), duplicates=len(duplicates), params=params,
                      plan_uri=plan_uri, execution_arn=event.execution_arn or "",
                      model_ref=ref, timings_ms={"plan": round_ms(perf_counter() - t0)})


def _resize_of_model(params: Params, ref: ModelRef, s3) -> Params:
    """``params`` with the pinned model's own resize (its sidecar's ``letter_box``). A sidecar
    that cannot be read keeps ``"model"``: Preprocess fails every image on it, naming it,
    as for any unusable model (a missing one already failed the pin)."""
    try:
        meta = model_cache.load_meta(ref.uri, s3=s3, version=ref.meta_version)
    except ModelError:
        return params
    return replace(params, resize=resolve_resize(params.resize, meta.letter_box))


# --- per-batch stages (one Lambda invoke per ItemBatcher batch) ----------------------------
# Errors that belong to one image (its object is missing, denied, too large, not an image,
# outside the allow-list...) stay on that image; these fail the whole stage instead, so Step
# Functions retries it (transient) or records every pending image (the model is unusable).
STAGE_ERRORS = (TransientAwsError, ModelError)
FETCH_WORKERS = 4  # image GETs in flight per Preprocess invoke (bounds memory: 4 x 50 MB)
WRITE_WORKERS = 8  # result PUTs in flight per Store invoke
DDB_BATCH = 25  # BatchWriteItem limit
DDB_ATTEMPTS = 6  # UnprocessedItems retried with 50 ms x 2^n backoff, then TransientAwsError


def _now_ms() -> float:
    return round(time.time() * 1000.0, 1)


def _per_image(err: Exception) -> bool:
    return isinstance(err, YoloSfnError) and not isinstance(err, STAGE_ERRORS)


def _failed(item: ImageItem, stage: str, err: Exception, t0: float) -> ImageItem:
    return replace(item, error=item_error(stage, type(err).__name__, str(err)),
                   timings_ms={**item.timings_ms, stage: round_ms(perf_counter() - t0)})


def _timed(item: ImageItem, stage: str, t0: float, **changes) -> ImageItem:
    return replace(item, timings_ms={**item.timings_ms, stage: round_ms(perf_counter() - t0)},
                   **changes)


def _finish(batch: Batch, stage: str, t0: float, start_ms: float,
            updated: dict[str, ImageItem], **changes) -> Batch:
    """``batch`` with the updated items (by image_id) and this stage's wall time and span."""
    items = tuple(updated.get(it.image_id, it) for it in batch.items)
    return replace(batch, items=items,
                   stage_ms={**batch.stage_ms, stage: round_ms(perf_counter() - t0)},
                   spans_ms={**batch.spans_ms, stage: [start_ms, _now_ms()]}, **changes)


def _model_uri(batch: Batch, cfg: StageConfig) -> str:
    return batch.model_ref.uri if batch.model_ref else cfg.require("model_uri").model_uri


def _meta(batch: Batch, cfg: StageConfig, s3):
    ref = batch.model_ref
    return model_cache.load_meta(_model_uri(batch, cfg), s3=s3,
                            version=ref.meta_version if ref else None)


def _fetch(item: ImageItem, cfg: StageConfig, s3) -> tuple[bytes | None, Exception | None, float]:
    """One image's bytes (a single GET), or the per-image error; and the ms it took."""
    t = perf_counter()
    try:
        loc = parse_s3_uri(item.uri, field="uri")
        check_allowed(loc, cfg.input_buckets, field="uri")  # Plan leaves this per image
        return storage.get_bytes(loc.bucket, loc.key, s3=s3, max_bytes=cfg.max_image_bytes), None, \
            perf_counter() - t
    except YoloSfnError as e:
        if not _per_image(e):
            raise
        return None, e, perf_counter() - t
    except ClientError as e:
        # a 4xx that storage.map_error leaves as it is (an SSE-C object, a disabled KMS key):
        # this object's error, not the batch's (5xx and throttling are TransientAwsError)
        return None, e, perf_counter() - t


def preprocess(batch: Batch, cfg: StageConfig, *, s3=None) -> Batch:
    """Each pending image: GET -> decode -> resize; one ``inputs.npz`` per batch:
    ``image_ids`` (n,) str + ``inputs`` (n, h, w, 3) uint8, in item order. GETs overlap
    (``FETCH_WORKERS``); decode and resize run one image at a time, so each image's
    ``timings_ms.preprocess`` (its GET + decode + resize) is its own work."""
    import numpy as np

    from yolo_sfn.core.image import decode_image, full_size_hw
    from yolo_sfn.core.preprocess import to_network_input

    t0, start = perf_counter(), _now_ms()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    meta = _meta(batch, cfg, s3)
    size, resize = tuple(meta.input_size), resolve_resize(batch.params.resize, meta.letter_box)
    pending = batch.pending
    updated, ids, tensors = {}, [], []
    with ThreadPoolExecutor(FETCH_WORKERS) as pool:
        for lo in range(0, len(pending), FETCH_WORKERS):
            chunk = pending[lo:lo + FETCH_WORKERS]
            for item, (data, err, fetch_s) in zip(
                    chunk, pool.map(lambda it: _fetch(it, cfg, s3), chunk), strict=True):
                t = perf_counter() - fetch_s  # the image's clock starts at its GET
                try:
                    if err is not None:
                        raise err
                    rgb = decode_image(data, name=item.uri, max_pixels=cfg.max_image_pixels)
                    src_hw = full_size_hw(data, rgb)  # a JPEG over the limit decodes reduced
                    x, transform = to_network_input(rgb, size, mode=resize,
                                              src_hw=src_hw)
                except Exception as e:  # whatever one image's bytes cause is its own
                    if isinstance(e, STAGE_ERRORS):
                        raise
                    updated[item.image_id] = _failed(item, "preprocess", e, t)
                    continue
                ids.append(item.image_id)
                tensors.append(x[0])  # (h, w, 3) uint8
                updated[item.image_id] = _timed(item, "preprocess", t, width=src_hw[1],
                                                height=src_hw[0], transform=transform.to_dict())
    keys = dict(batch.keys)
    if ids:
        keys["inputs"] = tmp_key(cfg, batch.batch_id, batch.child_id, INTERMEDIATES["preprocess"])
        storage.put_npz(cfg.bucket, keys["inputs"], {"image_ids": np.array(ids),
                                                "inputs": np.stack(tensors)}, s3=s3)
    return _finish(batch, "preprocess", t0, start, updated, keys=keys)


def _require_key(batch: Batch, name: str, stage: str) -> str:
    if name not in batch.keys:
        raise InputValidationError(f"keys.{name}: {stage} needs the batch's {name} file "
                                   f"(images pending: {len(batch.pending)})")
    return batch.keys[name]


def _check_ids(stored, pending: tuple[ImageItem, ...], key: str) -> None:
    if [str(i) for i in stored] != [it.image_id for it in pending]:
        raise InputValidationError(f"{key}: its images are not this batch's pending images")


COMPACT_MAX_FRACTION = 0.5  # above it (untrained weights) little is saved: full heads
_infer_locks: dict[int, threading.Lock] = {}
_infer_locks_guard = threading.Lock()


def _infer_lock(model) -> threading.Lock:
    """One batch at a time per loaded model in this process (a Lambda container serves one
    event anyway; locally, children share the model), so each image's time is its own
    interpreter call, never a wait for another batch's."""
    with _infer_locks_guard:
        return _infer_locks.setdefault(id(model), threading.Lock())


def infer(batch: Batch, cfg: StageConfig, *, s3=None, model=None) -> Batch:
    """``inputs.npz`` -> Model.run per image -> one ``heads.npz`` per batch, members
    ``<image_id>.<name>`` with each image's compact heads (``core.decode.compact_heads``: the
    rows at objectness >= the batch's score, so a trained YOLOv4-416 hands over KiB instead of
    3.6 MB), or its full ``head_i`` when more than ``COMPACT_MAX_FRACTION`` of the rows pass
    or the score is 0. ``timings_ms.infer`` of an image = its interpreter call."""
    from yolo_sfn.core.decode import compact_heads

    t0, start = perf_counter(), _now_ms()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    pending = batch.pending
    if not pending:  # every image failed before: nothing to load or run
        return _finish(batch, "infer", t0, start, {})
    if model is None:
        ref = batch.model_ref
        model = model_cache.get_model(_model_uri(batch, cfg), cfg.model_cache_dir,
                                 threads=cfg.infer_threads, s3=s3,
                                 version=ref.version if ref else None)
    meta = model.meta
    info = {"name": meta.name, "precision": meta.precision, "weights_sha256": meta.weights_sha256}
    key = _require_key(batch, "inputs", "infer")
    npz = storage.get_npz(cfg.bucket, key, s3=s3)
    _check_ids(npz["image_ids"], pending, key)
    inputs = npz["inputs"]  # (n, h, w, 3) uint8
    updated, arrays = {}, {}
    with _infer_lock(model):
        for i, item in enumerate(pending):
            t = perf_counter()
            heads = model.run(inputs[i:i + 1])
            updated[item.image_id] = _timed(item, "infer", t)
            kept = compact_heads(heads, meta, batch.params.score,
                                 max_fraction=COMPACT_MAX_FRACTION)
            if kept is None:  # most rows pass (untrained weights), or score 0: the full heads
                kept = {f"head_{j}": h for j, h in enumerate(heads)}
            arrays.update({f"{item.image_id}.{name}": a for name, a in kept.items()})
    heads_key = tmp_key(cfg, batch.batch_id, batch.child_id, INTERMEDIATES["infer"])
    keys = {**batch.keys, "heads": heads_key}
    storage.put_npz(cfg.bucket, keys["heads"], arrays, s3=s3)
    return _finish(batch, "infer", t0, start, updated, keys=keys, model=info)


def image_heads(npz: dict, image_id: str) -> dict:
    """One image's members of a batch ``heads.npz`` (``<image_id>.<name>`` -> ``name``)."""
    prefix = image_id + "."
    return {k[len(prefix):]: v for k, v in npz.items() if k.startswith(prefix)}


def _heads_for(arrays: dict, meta, key: str, image_id: str) -> list | dict:
    """One image's heads as Infer wrote them: its compact rows (checked against the model,
    decoded as they are) or its full heads."""
    from yolo_sfn.core.decode import check_compact, is_compact

    if not arrays:
        raise InputValidationError(f"heads: {key} has no heads for image {image_id}")
    if is_compact(arrays):
        try:
            check_compact(arrays, meta)
        except ModelError as e:
            raise InputValidationError(f"heads: {key} does not fit model {meta.name!r} "
                                       f"({e})") from None
        return arrays
    heads = [arrays[f"head_{i}"] for i in range(len(arrays))]
    if len(heads) != len(meta.heads):
        raise InputValidationError(f"heads: {len(heads)} heads in {key}, model "
                                   f"{meta.name!r} has {len(meta.heads)}")
    return heads


def postprocess(batch: Batch, cfg: StageConfig, *, s3=None, meta=None) -> Batch:
    """``heads.npz`` + metadata + each image's transform -> decode + NMS -> one
    ``detections.json`` per batch: ``{image_id: [Detection.to_dict()]}`` (original pixels)."""
    from yolo_sfn.core.postprocess import postprocess as decode_and_nms
    from yolo_sfn.core.preprocess import Transform

    t0, start = perf_counter(), _now_ms()
    cfg.require("bucket")
    s3 = s3 or aws.client("s3")
    pending = batch.pending
    if not pending:
        return _finish(batch, "postprocess", t0, start, {})
    if meta is None:
        meta = _meta(batch, cfg, s3)
    key = _require_key(batch, "heads", "postprocess")
    npz = storage.get_npz(cfg.bucket, key, s3=s3)
    updated, detections = {}, {}
    for item in pending:
        t = perf_counter()
        try:
            try:
                transform = Transform.from_dict(item.transform or {})
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise InputValidationError(
                    f"transform: malformed ({type(e).__name__}: {e})") from None
            heads = _heads_for(image_heads(npz, item.image_id), meta, key, item.image_id)
            dets = decode_and_nms(heads, meta, transform, score=batch.params.score,
                                  iou=batch.params.iou, nms_kind=cfg.nms_kind)
        except Exception as e:  # one image's heads or transform: its own error
            if isinstance(e, STAGE_ERRORS):
                raise
            updated[item.image_id] = _failed(item, "postprocess", e, t)
            continue
        detections[item.image_id] = [d.to_dict() for d in dets]
        updated[item.image_id] = _timed(item, "postprocess", t)
    keys = dict(batch.keys)
    if detections:
        keys["detections"] = tmp_key(cfg, batch.batch_id, batch.child_id,
                                     INTERMEDIATES["postprocess"])
        storage.put_json(cfg.bucket, keys["detections"], detections, s3=s3)
    return _finish(batch, "postprocess", t0, start, updated, keys=keys)


# --- Store / RecordBatchFailure ------------------------------------------------------------
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
    """DynamoDB throttling/5xx/connection errors -> TransientAwsError (the retryable class)."""
    try:
        yield
    except Exception as e:
        mapped = storage.map_error(e, what=what)
        if mapped is e:
            raise
        raise mapped from e


def put_records(cfg: StageConfig, records: list[dict], ddb, *, sleep=time.sleep) -> None:
    """One item per record with BatchWriteItem (25 a call); ``UnprocessedItems`` are retried
    with backoff, and what is still unprocessed after ``DDB_ATTEMPTS`` is a TransientAwsError
    (Step Functions retries the stage; every write overwrites, so that is safe)."""
    requests = [{"PutRequest": {"Item": {k: _ddb_value(v) for k, v in r.items()}}}
                for r in records]
    for lo in range(0, len(requests), DDB_BATCH):
        todo = requests[lo:lo + DDB_BATCH]
        for attempt in range(DDB_ATTEMPTS):
            with _ddb_errors(f"dynamodb batch_write_item {cfg.table}"):
                resp = ddb.batch_write_item(RequestItems={cfg.table: todo})
            todo = (resp.get("UnprocessedItems") or {}).get(cfg.table) or []
            if not todo:
                break
            if attempt < DDB_ATTEMPTS - 1:
                sleep(0.05 * 2 ** attempt)
        if todo:
            raise TransientAwsError(f"dynamodb batch_write_item {cfg.table}: {len(todo)} items "
                                   f"still unprocessed after {DDB_ATTEMPTS} attempts")


def _result(batch: Batch, item: ImageItem, dets: list | None, error: dict | None,
            start_ms: float, t: float) -> dict:
    """One image's result document (``results/<batch>/<image>.json``)."""
    return {"image_id": item.image_id, "uri": item.uri,
            "status": "failed" if error else "succeeded",
            "width": item.width, "height": item.height, "detections": dets or [],
            "timings_ms": {**item.timings_ms, "store": round_ms(perf_counter() - t)},
            "model": dict(batch.model), "error": error, "batch_id": batch.batch_id,
            "params": batch.params.to_dict(), "execution_arn": batch.execution_arn,
            "child": {"id": batch.child_id, "size": len(batch.items)},
            "batch_stage_ms": dict(batch.stage_ms),
            "spans_ms": {**batch.spans_ms, "store": [start_ms, _now_ms()]}}


def _write_results(cfg: StageConfig, batch: Batch, results: list[dict], *, s3,
                   ddb) -> ChildResult:
    """PUT each result JSON (overlapping) and one table item per image (BatchWriteItem)."""
    def put(result: dict) -> str:
        key = result_key(cfg, batch.batch_id, result["image_id"])
        return storage.put_json(cfg.bucket, key, result, s3=s3)

    with ThreadPoolExecutor(WRITE_WORKERS) as pool:
        uris = list(pool.map(put, results))
    updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = []
    for result, uri in zip(results, uris, strict=True):
        dets = result["detections"]
        counts = dict(Counter(d.get("label", str(d.get("class_id"))) for d in dets))
        records.append({
            "batch_id": batch.batch_id, "image_id": result["image_id"], "uri": result["uri"],
            "status": result["status"], "num_detections": len(dets), "class_counts": counts,
            "result_uri": uri, "timings_ms": result["timings_ms"], "error": result["error"],
            "execution_arn": batch.execution_arn, "child_id": batch.child_id,
            "updated_at": updated})
    put_records(cfg, records, ddb)
    ok = sum(1 for r in results if r["status"] == "succeeded")
    return ChildResult(batch_id=batch.batch_id, child_id=batch.child_id, size=len(results),
                       succeeded=ok, failed=len(results) - ok)


def store(batch: Batch, cfg: StageConfig, *, s3=None, ddb=None) -> ChildResult:
    """Every image of the batch -> ``results/<batch>/<image>.json`` + one table item (both
    overwrite): detections from the batch's ``detections.json`` (one GET), failed images with
    the stage, type and message their error recorded."""
    start = _now_ms()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    ddb = ddb or aws.client("dynamodb")
    dets = {}
    if batch.pending:
        key = _require_key(batch, "detections", "store")
        dets = storage.get_json(cfg.bucket, key, s3=s3)
        missing = [it.image_id for it in batch.pending if it.image_id not in dets]
        if missing:
            raise InputValidationError(f"{key}: no detections for {', '.join(missing[:3])}")
    results = []
    for item in batch.items:
        t = perf_counter()
        results.append(_result(batch, item, dets.get(item.image_id), item.error, start, t))
    return _write_results(cfg, batch, results, s3=s3, ddb=ddb)


# Step Functions' own errors may come without a Cause: say what happened instead of nothing
CAUSELESS = {"States.Timeout": "{stage} got no answer from Lambda within its TimeoutSeconds "
                               "(the function's largest Timeout plus a cold start; a function "
                               "past its own Timeout fails with Sandbox.Timedout instead)",
             "States.HeartbeatTimeout": "{stage} sent no heartbeat in time"}


def record_batch_failure(msg: BatchFailure, cfg: StageConfig, *, s3=None,
                         ddb=None) -> ChildResult:
    """A stage failed as a whole: every still-pending image is recorded as failed at that
    stage with the caught ``{"Error","Cause"}``; images that had failed already keep their
    own error."""
    start = _now_ms()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    ddb = ddb or aws.client("dynamodb")
    batch = msg.batch
    message = msg.error.message or CAUSELESS.get(
        msg.error.type, "{stage} failed as a whole ({type}, no cause given)").format(
            stage=msg.stage, type=msg.error.type)
    stage_error = {"stage": msg.stage, "type": msg.error.type, "message": message}
    results = []
    for item in batch.items:
        t = perf_counter()
        results.append(_result(batch, item, None, item.error or stage_error, start, t))
    return _write_results(cfg, batch, results, s3=s3, ddb=ddb)


def parse_cause(error: dict) -> CaughtError:
    """``{"Error", "Cause"}`` from a Step Functions Catch -> (type, message)."""
    return CaughtError.from_event(error)


# --- Summarize -----------------------------------------------------------------------------
# what build_summary reads from a record: Summarize queries only these attributes
SUMMARY_FIELDS = ("image_id", "status", "result_uri", "num_detections", "class_counts", "error",
                  "execution_arn")


def query_batch(cfg: StageConfig, batch_id: str, *, ddb=None,
                fields: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Every image's table item of the batch (paginated; not its lock), keyed by image_id;
    with ``fields``, only those attributes (``image_id`` is always included)."""
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
                if not batchlock.is_lock(item):
                    out[item["image_id"]] = item
    return out


def decimals_to_numbers(v):
    """A deserialized DynamoDB value with Decimals turned back into int/float (recursively)."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: decimals_to_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decimals_to_numbers(x) for x in v]
    return v


MISSING_ERROR = {"stage": "unknown", "type": "MissingResult",
                 "message": "this execution recorded no result for this image (its iteration "
                            "failed before Store/RecordBatchFailure)"}


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
        rec = decimals_to_numbers(rec)
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
    """Items manifest + table -> ``results/<batch>/summary.json``, then release the batch id's
    lock (``batchlock``) if this execution holds it; returns only counts."""
    t0 = perf_counter()
    cfg.require("bucket", "table")
    s3 = s3 or aws.client("s3")
    items = storage.get_json(msg.items.bucket, msg.items.key, s3=s3)
    if not isinstance(items, list):
        raise InputValidationError(f"items: {msg.items} is not a JSON array")
    try:
        plan_doc = storage.get_json(cfg.bucket, plan_key(msg.batch_id), s3=s3)
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
    storage.put_json(cfg.bucket, s_key, summary, s3=s3)
    if msg.execution_arn:  # the batch id is free again (Plan took it: batchlock)
        batchlock.release(cfg.table, msg.batch_id, msg.execution_arn,
                          ddb=ddb or aws.client("dynamodb"))
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
           "preprocess", "record_batch_failure", "store", "summarize"]
