"""One child's Preprocess -> Infer -> Postprocess -> Store chained by hand on moto with a real
model: a batch's detections equal ``Detector.detect`` (``yolo-sfn run`` == ``yolo-sfn
detect``), per-image errors stay on their image, intermediates are per batch and
deterministic, and the S3 requests per batch are what docs/ARCHITECTURE.md counts."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import boto3
import numpy as np
import pytest
from fixtures import stack as resources
from moto import mock_aws

from yolo_sfn import env
from yolo_sfn.errors import ImageTooLargeError, ModelError
from yolo_sfn.local.invoke import LambdaContext
from yolo_sfn.workflow import aws, handlers, model_cache, storage
from yolo_sfn.workflow.events import load_event
from yolo_sfn.workflow.stages import image_id_for


def load_handler(stage: str):
    """``functions/<stage>/app.py:handler``, called as Lambda calls it: with a context."""
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stage}"
    handler, context = handlers.load_handler(stage), LambdaContext(stage, 1024, 900.0, arn)
    return lambda event: handler(event, context)


ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "testdata" / "images"
IN, ART, MODELS = resources.INPUT, resources.ARTIFACTS, "yolo-sfn-models"


@pytest.fixture
def model_path(request) -> Path:
    try:
        return Path(request.getfixturevalue("demo_model"))
    except pytest.FixtureLookupError:
        pytest.skip("demo_model fixture (tests/conftest.py) not available")


@pytest.fixture
def stack(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", resources.REGION)
    environment = resources.stage_environment(model_uri=f"s3://{MODELS}/demo/model.tflite",
                                            model_cache_dir=str(tmp_path / "models"))
    for k, v in environment.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        aws.reset_clients()
        model_cache.clear_cache()
        s3 = boto3.client("s3", region_name=resources.REGION)
        resources.create_resources(s3, boto3.client("dynamodb", region_name=resources.REGION))
        s3.create_bucket(Bucket=MODELS)
        for f in IMAGES.iterdir():
            s3.upload_file(str(f), IN, f"samples/{f.name}")
        yield s3
    model_cache.clear_cache()
    aws.reset_clients()


def envelope(*names: str, model_ref: dict | None = None, **params) -> dict:
    """What the ItemBatcher hands a child: ``{"BatchInput", "Items"}``."""
    uris = [n if n.startswith("s3://") else f"s3://{IN}/samples/{n}" for n in names]
    head = {"batch_id": "t", "params": {"score": 0.25, "iou": 0.45, "resize": "stretch"} | params,
            "execution_arn": "arn:aws:states:us-east-1:1:execution:sm:t"}
    if model_ref:
        head["model_ref"] = model_ref
    return {"BatchInput": head, "Items": [{"image_id": image_id_for(u), "uri": u} for u in uris]}


def upload_model(s3, model_path: Path) -> dict:
    """Upload the model; returns the ``model_ref`` Plan would pin."""
    s3.upload_file(str(model_path), MODELS, "demo/model.tflite")
    s3.upload_file(str(model_path) + ".json", MODELS, "demo/model.tflite.json")
    return {"uri": f"s3://{MODELS}/demo/model.tflite",
            "version": s3.head_object(Bucket=MODELS, Key="demo/model.tflite")["ETag"],
            "meta_version": s3.head_object(Bucket=MODELS, Key="demo/model.tflite.json")["ETag"]}


def chain(event: dict) -> list[dict]:
    """Preprocess -> Infer -> Postprocess -> Store, as the child runs them."""
    out = [load_handler("preprocess")(event)]
    for stage in ("infer", "postprocess", "store"):
        out.append(load_handler(stage)(out[-1]))
    return out


def get(s3, key: str) -> bytes:
    return s3.get_object(Bucket=ART, Key=key)["Body"].read()


def result_of(s3, name: str) -> dict:
    uri = name if name.startswith("s3://") else f"s3://{IN}/samples/{name}"
    return json.loads(get(s3, f"results/t/{image_id_for(uri)}.json"))


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_a_batch_matches_the_local_detector_and_bad_images_fail_alone(stack, model_path,
                                                                      resize) -> None:
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import load_image_file

    ref = upload_model(stack, model_path)
    stack.put_object(Bucket=IN, Key="samples/not-an-image.jpg", Body=b"hello, not a jpeg")
    names = ("dog.jpg", "not-an-image.jpg", "person.jpg", "missing.jpg",
             "s3://elsewhere/dog.jpg")
    pre, inf, post, out = chain(envelope(*names, model_ref=ref, resize=resize))
    child = pre["child_id"]
    assert pre["keys"] == {"inputs": f"tmp/t/{child}/inputs.npz"}
    with np.load(io.BytesIO(get(stack, pre["keys"]["inputs"]))) as z:
        assert z["inputs"].dtype == np.uint8 and z["inputs"].shape[0] == 2  # the good images
        assert list(z["image_ids"]) == [it["image_id"] for it in pre["items"]
                                        if "error" not in it]
    assert inf["keys"]["heads"] == f"tmp/t/{child}/heads.npz"
    assert post["keys"]["detections"] == f"tmp/t/{child}/detections.json"
    assert out == {"batch_id": "t", "child_id": child, "size": 5, "succeeded": 2, "failed": 3}
    for msg in (pre, inf, post, out):
        assert len(json.dumps(msg)) < 16 * 1024  # state payloads carry keys, not tensors
    errors = {it["uri"].rsplit("/", 1)[-1] if "elsewhere" not in it["uri"] else "elsewhere":
              it["error"]["type"] for it in post["items"] if "error" in it}
    assert errors == {"not-an-image.jpg": "ImageDecodeError", "missing.jpg": "ObjectNotFoundError",
                      "elsewhere": "S3UriError"}
    for name in ("dog.jpg", "person.jpg"):
        detector = Detector(model_path, score=0.25, iou=0.45, resize=resize)
        expected = [d.to_dict() for d in detector.detect(load_image_file(IMAGES / name))]
        result = result_of(stack, name)
        assert result["status"] == "succeeded" and result["detections"] == expected
        assert result["model"] == inf["model"] and result["model"]["name"]
        assert set(result["timings_ms"]) == {"preprocess", "infer", "postprocess", "store"}
        assert result["child"] == {"id": child, "size": 5}
        assert list(result["spans_ms"]) == ["preprocess", "infer", "postprocess", "store"]
        spans = list(result["spans_ms"].values())
        assert all(a <= b for a, b in spans) and all(
            spans[i][1] <= spans[i + 1][0] for i in range(3))  # stages ran in order
        # an image's infer time is its own interpreter call, within the batch's Infer span
        assert result["timings_ms"]["infer"] <= result["batch_stage_ms"]["infer"]
        if resize == "stretch" and name == "dog.jpg":  # the real yolov3-tiny on dog.jpg
            assert {"dog", "bicycle"} <= {d["label"] for d in expected}
    bad = result_of(stack, "not-an-image.jpg")
    assert bad["status"] == "failed" and bad["detections"] == []
    assert bad["error"]["stage"] == "preprocess" and bad["error"]["type"] == "ImageDecodeError"
    assert "not-an-image.jpg" in bad["error"]["message"]


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """An APP1 Exif segment with one IFD0 entry, Orientation (0x0112, SHORT), after SOI."""
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1)
            + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0))
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def phone_photos(w: int, h: int) -> dict[str, tuple[bytes, tuple[int, int]]]:
    """dog.jpg enlarged to ``w`` x ``h``, stored upright and as a phone stores a portrait-held
    shot (pixels turned 90 degrees, EXIF orientation 6) -> {name: (JPEG, displayed (W, H))}."""
    import cv2

    big = cv2.resize(cv2.imread(str(IMAGES / "dog.jpg")), (w, h))
    jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    turned = cv2.imencode(".jpg", cv2.rotate(big, cv2.ROTATE_90_COUNTERCLOCKWISE),
                          [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    return {"photo.jpg": (jpeg, (w, h)),
            "photo-exif6.jpg": (with_exif_orientation(turned, 6), (w, h))}


def assert_close_to_full_decode(dets: list[dict], full: list[dict], wh: tuple[int, int]) -> None:
    """Every confident full-size detection has one of the same label within 1% of the image's
    long side (box) and 1% (box_norm); box_norm is box / (W, H, W, H)."""
    w, h = wh
    for d in dets:
        np.testing.assert_allclose(np.array(d["box"]) / [w, h, w, h], d["box_norm"], atol=1e-4)
    confident = [f for f in full if f["score"] >= 0.5]
    assert confident
    for f in confident:
        near = [d for d in dets if d["label"] == f["label"]
                and np.abs(np.subtract(d["box"], f["box"])).max() <= 0.01 * max(w, h)]
        assert near, (f, dets)
        assert np.abs(np.subtract(near[0]["box_norm"], f["box_norm"])).max() <= 0.01


def test_a_jpeg_over_the_pixel_limit_reports_the_photos_size_and_pixels(stack, model_path,
                                                                         monkeypatch) -> None:
    """Decoded at 1/2 scale (MAX_IMAGE_PIXELS under 1536 x 1152), an image's width, height and
    boxes are still the photo's own, EXIF-turned or not: what a full-size decode gives."""
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import decode_image

    ref = upload_model(stack, model_path)
    photos = phone_photos(1536, 1152)
    for name, (data, _) in photos.items():
        stack.put_object(Bucket=IN, Key=f"samples/{name}", Body=data)
    monkeypatch.setenv(env.MAX_IMAGE_PIXELS, str(1536 * 1152 - 1))
    pre, *_ = chain(envelope(*photos, model_ref=ref))
    with np.load(io.BytesIO(get(stack, pre["keys"]["inputs"]))) as z:
        assert z["inputs"].shape[0] == 2
    detector = Detector(model_path, score=0.25, iou=0.45)
    for name, (data, (w, h)) in photos.items():
        result = result_of(stack, name)
        assert result["status"] == "succeeded" and (result["width"], result["height"]) == (w, h)
        full = detector.detect(decode_image(data, name=name, max_pixels=10 ** 8))
        assert_close_to_full_decode(result["detections"], [d.to_dict() for d in full], (w, h))


def count_requests(s3) -> dict:
    """Every S3 API call the stages' shared client makes, by operation name."""
    from collections import Counter

    seen = Counter()
    s3.meta.events.register("before-call.s3", lambda model, **_: seen.update([model.name]))
    return seen


def test_s3_requests_per_batch_and_no_head_when_warm(stack, model_path) -> None:
    """Per batch of n: n image GETs + 3 intermediate PUTs + 3 GETs + n result PUTs, no HEAD
    (the model version is pinned by Plan; the image size comes with the GET)."""
    ref = upload_model(stack, model_path)
    names = ("dog.jpg", "person.jpg", "kite.jpg")
    chain(envelope(*names, model_ref=ref))  # warm: the model and its metadata are cached
    seen = count_requests(aws.client("s3"))
    chain(envelope(*names, model_ref=ref))
    assert dict(seen) == {"GetObject": 3 + 3, "PutObject": 3 + 3}


def test_a_rerun_child_writes_the_same_keys_and_bytes(stack, model_path) -> None:
    """EXPRESS children run at least once: every intermediate is deterministic."""
    ref = upload_model(stack, model_path)
    event = envelope("dog.jpg", "horses.jpg", model_ref=ref)
    first = chain(event)
    blobs = {k: get(stack, k) for k in first[2]["keys"].values()}
    second = chain(event)
    assert second[2]["keys"] == first[2]["keys"]
    assert {k: get(stack, k) for k in second[2]["keys"].values()} == blobs


def test_oversized_image_fails_alone(stack, model_path, monkeypatch) -> None:
    ref = upload_model(stack, model_path)
    size = (IMAGES / "kite.jpg").stat().st_size
    monkeypatch.setenv(env.MAX_IMAGE_BYTES, str(size - 1))
    small = min(IMAGES.iterdir(), key=lambda p: p.stat().st_size).name
    pre = load_handler("preprocess")(envelope("kite.jpg", small, model_ref=ref))
    [big] = [it for it in pre["items"] if it["uri"].endswith("kite.jpg")]
    assert big["error"]["type"] == ImageTooLargeError.__name__
    assert f"limit {size - 1}" in big["error"]["message"]
    assert [it.get("error") for it in pre["items"] if it is not big] == [None]


def test_a_batch_of_only_bad_images_is_recorded_without_running_the_model(stack,
                                                                         model_path) -> None:
    ref = upload_model(stack, model_path)
    pre = load_handler("preprocess")(envelope("missing-1.jpg", "missing-2.jpg", model_ref=ref))
    assert pre["keys"] == {} and all("error" in it for it in pre["items"])
    stack.delete_object(Bucket=MODELS, Key="demo/model.tflite")  # Infer must not need it
    inf = load_handler("infer")(pre)
    post = load_handler("postprocess")(inf)
    out = load_handler("store")(post)
    assert (out["succeeded"], out["failed"]) == (0, 2)
    assert result_of(stack, "missing-1.jpg")["error"]["type"] == "ObjectNotFoundError"


def test_each_log_line_names_its_invocation_batch_and_image(stack, model_path) -> None:
    """Powertools keys: the context's (function_name, request id, cold_start) and the batch's
    (log_keys), replaced on the next invocation; a failed image adds its id, URI and error."""
    import sys

    ref = upload_model(stack, model_path)
    logged = io.StringIO()
    preprocess = load_handler("preprocess")
    handler = sys.modules["yolo_sfn_functions.preprocess"].logger.registered_handler
    # swapped without setStream, which flushes the old stream: the module may have bound an
    # earlier test's captured stdout, closed by now
    old, handler.stream = handler.stream, logged
    try:
        first = preprocess(envelope("missing-1.jpg", model_ref=ref))
        second = preprocess(envelope("dog.jpg", model_ref=ref))
    finally:
        handler.stream = old
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    failed, done, done2 = lines
    assert failed["message"] == "preprocess failed for one image"
    assert failed["image_id"] == image_id_for(f"s3://{IN}/samples/missing-1.jpg")
    assert failed["error_type"] == "ObjectNotFoundError"
    assert failed["function_name"] == "preprocess" and "function_request_id" in failed
    assert (failed["batch_id"], failed["child_id"], failed["size"]) == ("t", first["child_id"], 1)
    assert done["message"] == "preprocessed" and done["pending"] == 0
    assert done2["child_id"] == second["child_id"] != first["child_id"]
    assert "image_id" not in done2 and "error" not in done2


def test_an_unexpected_decoder_error_stays_on_its_image(stack, model_path, monkeypatch) -> None:
    """Whatever one image's bytes make the decoder raise is that image's error, never the
    batch's."""
    from yolo_sfn.core import image as core_image

    ref = upload_model(stack, model_path)
    real = core_image.decode_image

    def fussy(data, *, name, **kw):
        if name.endswith("kite.jpg"):
            raise ValueError("libjpeg: weird marker")
        return real(data, name=name, **kw)

    monkeypatch.setattr(core_image, "decode_image", fussy)
    pre = load_handler("preprocess")(envelope("kite.jpg", "dog.jpg", model_ref=ref))
    errors = [it.get("error") for it in pre["items"]]
    assert errors[0]["type"] == "ValueError" and "weird marker" in errors[0]["message"]
    assert errors[1] is None


def test_an_unnamed_s3_client_error_stays_on_its_image(stack, model_path, monkeypatch) -> None:
    """A 4xx S3 answers for one object that no project error names (an SSE-C object read
    without its key: 400 InvalidRequest) fails that image alone; its batch-mates succeed."""
    from botocore.exceptions import ClientError

    ref = upload_model(stack, model_path)
    real = storage.get_bytes

    def sse_c(bucket, key, **kw):
        if key.endswith("kite.jpg"):
            raise ClientError({"Error": {"Code": "InvalidRequest", "Message": "SSE-C key needed"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetObject")
        return real(bucket, key, **kw)

    monkeypatch.setattr(storage, "get_bytes", sse_c)
    pre = load_handler("preprocess")(envelope("kite.jpg", "dog.jpg", model_ref=ref))
    errors = [it.get("error") for it in pre["items"]]
    assert errors[0]["type"] == "ClientError" and "InvalidRequest" in errors[0]["message"]
    assert errors[0]["stage"] == "preprocess" and errors[1] is None


def test_model_is_downloaded_once_and_reused_warm(stack, model_path, tmp_path) -> None:
    ref = upload_model(stack, model_path)
    pre = load_handler("preprocess")(envelope("person.jpg", model_ref=ref))
    load_handler("infer")(pre)
    first = model_cache.get_model(ref["uri"], str(tmp_path / "models"), version=ref["version"])
    load_handler("infer")(pre)
    assert model_cache.get_model(ref["uri"], str(tmp_path / "models"),
                            version=ref["version"]) is first
    assert len(list((tmp_path / "models").iterdir())) == 1  # one download
    # a model version nobody pinned yet (an unpinned event looks it up): missing = ModelError
    stack.delete_object(Bucket=MODELS, Key="demo/model.tflite")
    with pytest.raises(ModelError, match=r"model\.tflite: model file unavailable"):
        load_handler("infer")(pre | {"model_ref": None})


def test_a_transient_error_fails_the_whole_stage_so_step_functions_retries_it(
        stack, model_path, monkeypatch) -> None:
    """Only per-image errors stay on an image; throttling beyond botocore's retries is the
    stage's (Retry TransientAwsError), never recorded as that image's failure."""
    from yolo_sfn.errors import TransientAwsError

    ref = upload_model(stack, model_path)
    load_handler("preprocess")(envelope("dog.jpg", model_ref=ref))  # metadata cached
    real = storage.get_bytes

    def flaky(bucket, key, **kw):
        if key.endswith("person.jpg"):
            raise TransientAwsError(f"get s3://{bucket}/{key}: SlowDown")
        return real(bucket, key, **kw)

    monkeypatch.setattr(storage, "get_bytes", flaky)
    with pytest.raises(TransientAwsError, match="SlowDown"):
        load_handler("preprocess")(envelope("dog.jpg", "person.jpg", model_ref=ref))


def test_sample_events_are_one_batch_with_a_bad_image() -> None:
    event = load_event("preprocess")
    uris = [it["uri"] for it in event["Items"]]
    assert uris[0] == f"s3://{IN}/samples/dog.jpg"
    assert [it["image_id"] for it in event["Items"]] == [image_id_for(u) for u in uris]
    store = load_event("store")
    assert [it.get("error", {}).get("type") for it in store["items"]] == [
        None, None, "ImageDecodeError"]


def test_model_disk_cache_is_keyed_by_etag(stack, tmp_path) -> None:
    uri = f"s3://{MODELS}/demo/model.tflite"
    for body in (b"version-1", b"version-2"):
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=body)
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite.json", Body=b"{}")
        path = model_cache.fetch_model(uri, str(tmp_path / "cache"))
        assert path.read_bytes() == body  # a replaced model is never served from disk


def test_model_disk_cache_keeps_the_most_recent_versions(stack, tmp_path, monkeypatch) -> None:
    """Every model version gets a folder: old, idle ones are deleted, recent ones kept."""
    import os
    import time

    monkeypatch.setattr(model_cache, "MODEL_CACHE_MIN_IDLE_S", 0.0)
    monkeypatch.setattr(model_cache, "MODEL_CACHE_KEEP", 2)
    cache = tmp_path / "cache"
    uri = f"s3://{MODELS}/demo/model.tflite"
    paths = []
    for i in range(4):
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=f"version-{i}".encode())
        stack.put_object(Bucket=MODELS, Key="demo/model.tflite.json", Body=b"{}")
        paths.append(model_cache.fetch_model(uri, str(cache)))
        old = time.time() - 3600 * (4 - i)  # older versions were used longer ago
        os.utime(paths[-1].parent, (old, old))
    (cache / "not-a-model-folder").mkdir()
    stack.put_object(Bucket=MODELS, Key="demo/model.tflite", Body=b"version-4")
    newest = model_cache.fetch_model(uri, str(cache))
    kept = sorted(f.name for f in cache.iterdir())
    assert newest.read_bytes() == b"version-4"
    assert kept == sorted([newest.parent.name, paths[3].parent.name, "not-a-model-folder"])


def test_model_cache_pruning_spares_recently_used_folders(tmp_path) -> None:
    cache = tmp_path / "cache"
    for name in ("0" * 16, "1" * 16, "2" * 16):
        (cache / name).mkdir(parents=True)
    assert model_cache.prune_model_cache(cache, max_folders=1) == []  # all used in the last 10 min
    assert len(list(cache.iterdir())) == 3


def test_model_cache_on_lambda_keeps_only_the_model_in_use(tmp_path, monkeypatch) -> None:
    import os
    import time

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "yolo-sfn-infer")
    cache = tmp_path / "cache"
    for name in ("0" * 16, "1" * 16):
        (cache / name).mkdir(parents=True)
    os.utime(cache / ("0" * 16), (time.time() - 5, time.time() - 5))
    gone = model_cache.prune_model_cache(cache, keep=cache / ("1" * 16))
    assert gone == [cache / ("0" * 16)] and [f.name for f in cache.iterdir()] == ["1" * 16]


def test_resize_follows_the_model_when_none_is_given(stack, model_path, tmp_path, monkeypatch):
    """No resize in the input and RESIZE_MODE unset (template ResizeMode ``model``): Plan
    picks letterbox for a letter_box model and stretch otherwise; Preprocess resolves a
    ``model`` it is handed the same way. An explicit resize still wins."""
    import shutil

    monkeypatch.delenv("RESIZE_MODE", raising=False)
    boxed = tmp_path / "boxed.tflite"
    shutil.copyfile(model_path, boxed)
    meta = json.loads(Path(f"{model_path}.json").read_text())
    Path(f"{boxed}.json").write_text(json.dumps({**meta, "letter_box": True}))
    arn = "arn:aws:states:us-east-1:1:execution:sm:"

    def plan(inp: dict, name: str) -> dict:
        return load_handler("plan")({"input": inp, "execution_name": name,
                                     "execution_arn": arn + name})

    uris = [f"s3://{IN}/samples/dog.jpg"]
    for model, mode in ((model_path, "stretch"), (boxed, "letterbox")):
        ref = upload_model(stack, model)
        model_cache.clear_cache()
        assert plan({"images": uris}, f"p-{mode}")["params"]["resize"] == mode
        assert plan({"images": uris, "resize": "stretch"}, f"s-{mode}")["params"]["resize"] \
            == "stretch"
        pre = load_handler("preprocess")(envelope("dog.jpg", model_ref=ref, resize="model"))
        assert [it["transform"]["mode"] for it in pre["items"]] == [mode]
