"""Model and metadata loading for the stages, cached per process (per warm Lambda container).

``model_uri`` is ``s3://bucket/key.tflite`` (sidecar at ``key.tflite.json``) or a local path
(the local runner, or a model shipped in a layer/container image).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import ModelMeta, meta_path_for
from yolo_sfn.workflow import aws, io
from yolo_sfn.workflow.s3uri import SCHEME, parse_s3_uri

_metas: dict[str, ModelMeta] = {}
_models: dict[tuple[str, int | None], object] = {}
_lock = threading.Lock()


def _require(model_uri: str) -> str:
    if not model_uri:
        raise ModelError("no model configured (environment MODEL_URI is empty)")
    return model_uri


def load_meta(model_uri: str, *, s3=None) -> ModelMeta:
    """The model's sidecar metadata (small JSON); no .tflite download."""
    model_uri = _require(model_uri)
    meta = _metas.get(model_uri)
    if meta is None:
        if model_uri.startswith(SCHEME):
            loc = parse_s3_uri(model_uri, field="MODEL_URI")
            try:
                d = io.get_json(loc.bucket, loc.key + ".json", s3=s3, max_bytes=10 * 1024 * 1024)
            except ValueError as e:
                raise ModelError(f"{model_uri}.json: unreadable model metadata ({e})") from e
            meta = ModelMeta.from_dict(d, source=model_uri + ".json")
        else:
            meta = ModelMeta.load(model_uri)
        _metas[model_uri] = meta
    return meta


def fetch_model(model_uri: str, cache_dir: str, *, s3=None) -> Path:
    """Local path of the .tflite (+ sidecar), downloading from S3 into ``cache_dir`` once."""
    model_uri = _require(model_uri)
    if not model_uri.startswith(SCHEME):
        return Path(model_uri)
    loc = parse_s3_uri(model_uri, field="MODEL_URI")
    s3 = s3 or aws.client("s3")
    with io.s3_errors(loc.bucket, loc.key, "head"):
        etag = s3.head_object(Bucket=loc.bucket, Key=loc.key).get("ETag", "")
    # keyed by URI *and* ETag: a replaced model under the same URI is never served stale
    # from a cache directory that outlives the process (local runs, reused /tmp)
    folder = Path(cache_dir) / hashlib.sha1(f"{model_uri}\n{etag}".encode()).hexdigest()[:16]
    path = folder / (Path(loc.key).name or "model.tflite")
    meta_path = meta_path_for(path)
    if path.exists() and meta_path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    for key, target in ((loc.key + ".json", meta_path), (loc.key, path)):
        part = target.with_name(target.name + f".part{os.getpid()}")
        io.download_file(loc.bucket, key, str(part), s3=s3)
        part.replace(target)  # atomic: a crashed download never looks complete
    return path


def get_model(model_uri: str, cache_dir: str, *, threads: int | None = None, s3=None):
    """:class:`yolo_sfn.core.runtime.Model`, loaded once per container and reused warm."""
    cache_key = (model_uri, threads)
    model = _models.get(cache_key)
    if model is None:
        with _lock:
            model = _models.get(cache_key)
            if model is None:
                from yolo_sfn.core.runtime import Model

                model = Model.load(fetch_model(model_uri, cache_dir, s3=s3), threads=threads)
                _models[cache_key] = model
    return model


def clear_cache() -> None:
    """Forget loaded models and metadata (call after replacing the model under MODEL_URI in
    the same process, e.g. a local runner deploying a new model)."""
    with _lock:
        _metas.clear()
        _models.clear()
