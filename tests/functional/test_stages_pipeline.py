"""Preprocess -> Infer -> Postprocess -> Store chained by hand on moto with a real model:
the workflow's detections equal ``Detector.detect`` (``yolo-sfn run`` == ``yolo-sfn detect``),
plus the per-image error paths of Preprocess."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from yolo_sfn import env
from yolo_sfn.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    ModelError,
    ObjectNotFoundError,
    S3UriError,
)
from yolo_sfn.workflow import aws, models, testing
from yolo_sfn.workflow.events import load_event
from yolo_sfn.workflow.handlers import load_handler
from yolo_sfn.workflow.stages import image_id_for

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "testdata" / "images"
IN, ART, MODELS = testing.INPUT, testing.ARTIFACTS, "yolo-sfn-models"


@pytest.fixture
def model_path(request) -> Path:
    try:
        return Path(request.getfixturevalue("demo_model"))
    except pytest.FixtureLookupError:
        pytest.skip("demo_model fixture (tests/conftest.py) not available")


@pytest.fixture
def stack(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", testing.REGION)
    environment = testing.stage_environment(model_uri=f"s3://{MODELS}/demo/model.tflite",
                                            model_cache_dir=str(tmp_path / "models"))
    for k, v in environment.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        aws.reset_clients()
        models.clear_cache()
        s3 = boto3.client("s3", region_name=testing.REGION)
        testing.create_resources(s3, boto3.client("dynamodb", region_name=testing.REGION))
        s3.create_bucket(Bucket=MODELS)
        for f in IMAGES.iterdir():
            s3.upload_file(str(f), IN, f"samples/{f.name}")
        yield s3
    models.clear_cache()
    aws.reset_clients()


def task(name: str, **params) -> dict:
    uri = f"s3://{IN}/samples/{name}"
    return {"batch_id": "t", "image_id": image_id_for(uri), "uri": uri,
            "params": {"score": 0.25, "iou": 0.45, "resize": "stretch"} | params}


def upload_model(s3, model_path: Path) -> None:
    s3.upload_file(str(model_path), MODELS, "demo/model.tflite")
    s3.upload_file(str(model_path) + ".json", MODELS, "demo/model.tflite.json")


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_chained_stages_match_the_local_detector(stack, model_path, resize) -> None:
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import load_image_file

    upload_model(stack, model_path)
    event = task("dog.jpg", resize=resize)
    pre = load_handler("preprocess")(event)
    x = np.load(io.BytesIO(stack.get_object(Bucket=ART, Key=pre["input_key"])["Body"].read()))
    assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[0] == 1 and x.shape[3] == 3
    assert pre["input_key"] == f"tmp/t/{event['image_id']}/input.npy"
    inf = load_handler("infer")(pre)
    post = load_handler("postprocess")(inf)
    out = load_handler("store")(post)
    assert set(post["timings_ms"]) == {"preprocess", "infer", "postprocess"}
    assert out["status"] == "succeeded" and set(out["timings_ms"]) == {
        "preprocess", "infer", "postprocess", "store"}
    for msg in (pre, inf, post, out):
        assert len(json.dumps(msg)) < 8 * 1024  # state payloads carry keys only
    result = json.loads(stack.get_object(Bucket=ART, Key=f"results/t/{event['image_id']}.json")
                        ["Body"].read())
    detector = Detector(model_path, score=0.25, iou=0.45, resize=resize)
    expected = [d.to_dict() for d in detector.detect(load_image_file(IMAGES / "dog.jpg"))]
    assert result["detections"] == expected
    assert out["num_detections"] == len(expected)
    assert result["model"] == inf["model"] and result["model"]["name"]
    if resize == "stretch":  # the real yolov3-tiny on dog.jpg
        assert {"dog", "bicycle"} <= {d["label"] for d in expected}


def test_model_is_downloaded_once_and_reused_warm(stack, model_path, tmp_path) -> None:
    upload_model(stack, model_path)
    uri = f"s3://{MODELS}/demo/model.tflite"
    pre = load_handler("preprocess")(task("person.jpg"))
    load_handler("infer")(pre)
    first = models.get_model(uri, str(tmp_path / "models"))
    load_handler("infer")(pre)
    assert models.get_model(uri, str(tmp_path / "models")) is first
    assert len(list((tmp_path / "models").iterdir())) == 1  # one download
    stack.delete_object(Bucket=MODELS, Key="demo/model.tflite")
    with pytest.raises(ModelError, match=r"model\.tflite: model file unavailable"):
        load_handler("infer")(pre)


def test_preprocess_error_types(stack, monkeypatch) -> None:
    stack.put_object(Bucket=IN, Key="samples/not-an-image.jpg", Body=b"hello, not a jpeg")
    with pytest.raises(ImageDecodeError):
        load_handler("preprocess")(task("not-an-image.jpg"))
    with pytest.raises(ObjectNotFoundError, match=r"missing\.jpg"):
        load_handler("preprocess")(task("missing.jpg"))
    with pytest.raises(S3UriError, match=r"^uri: "):
        load_handler("preprocess")(task("dog.jpg") | {"uri": "s3://elsewhere/dog.jpg"})
    monkeypatch.setenv(env.MAX_IMAGE_BYTES, "1000")
    with pytest.raises(ImageTooLargeError, match="limit 1000"):
        load_handler("preprocess")(task("dog.jpg"))


def test_sample_preprocess_event_targets_a_sample_image() -> None:
    event = load_event("preprocess")
    assert event["uri"] == f"s3://{IN}/samples/dog.jpg"
    assert event["image_id"] == image_id_for(event["uri"])


def test_model_disk_cache_is_keyed_by_etag(stack, tmp_path) -> None:
    uri = f"s3://{MODELS}/demo/model.tflite"
    for body in (b"version-1", b"version-2"):
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=body)
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite.json", Body=b"{}")
        path = models.fetch_model(uri, str(tmp_path / "cache"))
        assert path.read_bytes() == body  # a replaced model is never served from disk


def test_model_disk_cache_keeps_the_most_recent_versions(stack, tmp_path, monkeypatch) -> None:
    """Every model version gets a folder: old, idle ones are deleted, recent ones kept."""
    import os
    import time

    monkeypatch.setattr(models, "MODEL_CACHE_MIN_IDLE_S", 0.0)
    monkeypatch.setattr(models, "MODEL_CACHE_KEEP", 2)
    cache = tmp_path / "cache"
    uri = f"s3://{MODELS}/demo/model.tflite"
    paths = []
    for i in range(4):
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=f"version-{i}".encode())
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite.json", Body=b"{}")
        paths.append(models.fetch_model(uri, str(cache)))
        old = time.time() - 3600 * (4 - i)  # older versions were used longer ago
        os.utime(paths[-1].parent, (old, old))
    (cache / "not-a-model-folder").mkdir()
    stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=b"version-4")
    newest = models.fetch_model(uri, str(cache))
    kept = sorted(f.name for f in cache.iterdir())
    assert newest.read_bytes() == b"version-4"
    assert kept == sorted([newest.parent.name, paths[3].parent.name, "not-a-model-folder"])


def test_model_cache_pruning_spares_recently_used_folders(tmp_path) -> None:
    cache = tmp_path / "cache"
    for name in ("0" * 16, "1" * 16, "2" * 16):
        (cache / name).mkdir(parents=True)
    assert models.prune_model_cache(cache, max_folders=1) == []  # all used in the last 10 min
    assert len(list(cache.iterdir())) == 3


def test_model_cache_on_lambda_keeps_only_the_model_in_use(tmp_path, monkeypatch) -> None:
    import os
    import time

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "yolo-sfn-infer")
    cache = tmp_path / "cache"
    for name in ("0" * 16, "1" * 16):
        (cache / name).mkdir(parents=True)
    os.utime(cache / ("0" * 16), (time.time() - 5, time.time() - 5))
    gone = models.prune_model_cache(cache, keep=cache / ("1" * 16))
    assert gone == [cache / ("0" * 16)] and [f.name for f in cache.iterdir()] == ["1" * 16]
