"""Model and metadata loading for the stages, cached per process (per warm Lambda container).

``model_uri`` is ``s3://bucket/key.tflite`` (sidecar at ``key.tflite.json``) or a local path
(the local runner, or a model shipped in a layer/container image).

Caches are keyed by the object's version (S3 ETag; mtime+size for local files). Plan looks
the versions up once per execution (:func:`pin`) and every stage loads exactly those, so one
execution uses one model version and a warm container makes no model request; a model
replaced under the same URI is picked up by the next execution, never served stale. Missing or
unreadable model objects are :class:`ModelError` (naming the URI), not generic S3 errors;
throttling stays :class:`TransientAwsError` so the stage is retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from yolo_sfn.errors import AccessDeniedError, ModelError, ObjectNotFoundError
from yolo_sfn.model.meta import ModelMeta, meta_path_for
from yolo_sfn.workflow import aws, storage
from yolo_sfn.workflow.s3uri import SCHEME, parse_s3_uri

_metas: dict[str, tuple[str, ModelMeta]] = {}  # uri -> (version, meta)
_models: dict[tuple[str, int | None], tuple[str, object]] = {}  # (uri, threads) -> (version, model)
_lock = threading.Lock()
MODEL_CACHE_KEEP = 4  # model versions kept on disk (most recently used first)
MODEL_CACHE_MIN_IDLE_S = 600.0  # never delete a folder used in the last 10 minutes
_FOLDER = re.compile(r"[0-9a-f]{16}")  # fetch_model's folder names


def _require(model_uri: str) -> str:
    if not model_uri:
        raise ModelError("no model configured (environment MODEL_URI is empty)")
    return model_uri


@contextmanager
def _model_errors(what: str) -> Iterator[None]:
    """ObjectNotFound/AccessDenied on a model object -> ModelError naming it."""
    try:
        yield
    except (ObjectNotFoundError, AccessDeniedError) as e:
        raise ModelError(f"{what}: model file unavailable ({e})") from e


def version_of(model_uri: str, suffix: str = "", *, s3=None) -> str:
    """S3 ETag (or local mtime+size) of the model (``suffix=".json"``: its sidecar)."""
    target = _require(model_uri) + suffix
    if model_uri.startswith(SCHEME):
        loc = parse_s3_uri(target, field="MODEL_URI")
        s3 = s3 or aws.client("s3")
        with _model_errors(target), storage.s3_errors(loc.bucket, loc.key, "head"):
            return str(s3.head_object(Bucket=loc.bucket, Key=loc.key).get("ETag", ""))
    try:
        st = os.stat(target)
    except OSError as e:
        raise ModelError(f"{target}: model file unavailable ({e.strerror})") from None
    return f"{st.st_mtime_ns}-{st.st_size}"


def load_meta(model_uri: str, *, s3=None, version: str | None = None) -> ModelMeta:
    """The model's sidecar metadata (small JSON); no .tflite download. With ``version`` (the
    sidecar's ETag, pinned by Plan) a warm container makes no request at all."""
    if not version:
        version = version_of(model_uri, ".json", s3=s3)
    cached = _metas.get(model_uri)
    if cached is not None and cached[0] == version:
        return cached[1]
    if model_uri.startswith(SCHEME):
        loc = parse_s3_uri(model_uri + ".json", field="MODEL_URI")
        with _model_errors(model_uri + ".json"):
            try:
                d = storage.get_json(loc.bucket, loc.key, s3=s3, max_bytes=10 * 1024 * 1024)
            except ValueError as e:
                raise ModelError(f"{model_uri}.json: unreadable model metadata ({e})") from e
        meta = ModelMeta.from_dict(d, source=model_uri + ".json")
    else:
        meta = ModelMeta.load(model_uri)
    _metas[model_uri] = (version, meta)
    return meta


def pin(model_uri: str, *, s3=None) -> tuple[str, str]:
    """``(model version, sidecar version)`` for Plan to pin (two HEADs, or two stats)."""
    return version_of(model_uri, s3=s3), version_of(model_uri, ".json", s3=s3)


def fetch_model(model_uri: str, cache_dir: str, *, s3=None, version: str | None = None) -> Path:
    """Local path of the .tflite (+ sidecar), downloading from S3 into ``cache_dir`` once per
    (URI, ETag)."""
    model_uri = _require(model_uri)
    if not model_uri.startswith(SCHEME):
        return Path(model_uri)
    loc = parse_s3_uri(model_uri, field="MODEL_URI")
    s3 = s3 or aws.client("s3")
    etag = version if version is not None else version_of(model_uri, s3=s3)
    # keyed by URI *and* ETag: a cache directory that outlives the process (local runs,
    # reused /tmp) never serves a replaced model
    folder = Path(cache_dir) / hashlib.sha1(f"{model_uri}\n{etag}".encode()).hexdigest()[:16]
    path = folder / (Path(loc.key).name or "model.tflite")
    meta_path = meta_path_for(path)
    if path.exists() and meta_path.exists():
        with contextlib.suppress(OSError):
            os.utime(folder)  # recently used: survives pruning
        return path
    folder.mkdir(parents=True, exist_ok=True)
    for key, target in ((loc.key + ".json", meta_path), (loc.key, path)):
        part = target.with_name(target.name + f".part{os.getpid()}")
        with _model_errors(f"s3://{loc.bucket}/{key}"):
            storage.download_file(loc.bucket, key, str(part), s3=s3)
        part.replace(target)  # atomic: a crashed download never looks complete
    prune_model_cache(Path(cache_dir), keep=folder)
    return path


def prune_model_cache(cache_dir: Path, *, keep: Path | None = None,
                      max_folders: int | None = None,
                      min_idle_s: float | None = None) -> list[Path]:
    """Delete model folders beyond the ``max_folders`` most recently used, if idle for
    ``min_idle_s`` (another process may be about to load one). Each model version gets its own
    folder, so without this a long-lived ``/tmp`` (local runs, tests) grows by a model copy
    per version ever used. Returns the deleted folders. Defaults: ``MODEL_CACHE_KEEP`` and
    ``MODEL_CACHE_MIN_IDLE_S``; on Lambda only the folder in use is kept (an environment serves
    one invocation at a time, and a 400 MB model twice would nearly fill Infer's 1024 MB /tmp).
    """
    on_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    if max_folders is None:  # Lambda: one invocation per environment, /tmp of 1024 MB
        max_folders = 1 if on_lambda else MODEL_CACHE_KEEP
    if min_idle_s is None:
        min_idle_s = 0.0 if on_lambda else MODEL_CACHE_MIN_IDLE_S
    now = time.time()
    try:
        folders = [(f.stat().st_mtime, f) for f in cache_dir.iterdir()
                   if f.is_dir() and _FOLDER.fullmatch(f.name)]
    except OSError:
        return []
    folders.sort(reverse=True)
    gone = []
    for _, f in folders[max_folders:]:
        try:
            mtime = f.stat().st_mtime  # again: another process may have just used it
        except OSError:
            continue
        if f == keep or now - mtime < min_idle_s:
            continue
        shutil.rmtree(f, ignore_errors=True)
        gone.append(f)
    return gone


def get_model(model_uri: str, cache_dir: str, *, threads: int | None = None, s3=None,
              version: str | None = None):
    """:class:`yolo_sfn.core.runtime.Model`, loaded once per container (per model version)
    and reused warm; with ``version`` (pinned by Plan) a warm call makes no request."""
    if not version:
        version = version_of(model_uri, s3=s3)
    cache_key = (model_uri, threads)
    cached = _models.get(cache_key)
    if cached is not None and cached[0] == version:
        return cached[1]
    with _lock:
        cached = _models.get(cache_key)
        if cached is not None and cached[0] == version:
            return cached[1]
        from yolo_sfn.core.runtime import Model

        path = fetch_model(model_uri, cache_dir, s3=s3, version=version)
        model = Model.load(path, threads=threads)
        _models[cache_key] = (version, model)
    return model


def clear_cache() -> None:
    """Forget loaded models and metadata."""
    with _lock:
        _metas.clear()
        _models.clear()
