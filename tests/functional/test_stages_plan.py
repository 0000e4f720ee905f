"""Plan handler on moto: sources, de-duplication, allow-list, items manifest."""

from __future__ import annotations

import json

import pytest
from fixtures import stack as resources

from yolo_sfn.errors import InputValidationError, ObjectNotFoundError, S3UriError
from yolo_sfn.local.invoke import LambdaContext
from yolo_sfn.workflow import handlers
from yolo_sfn.workflow.events import load_event
from yolo_sfn.workflow.stages import image_id_for


def load_handler(stage: str):
    """``functions/<stage>/app.py:handler``, called as Lambda calls it: with a context."""
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stage}"
    handler, context = handlers.load_handler(stage), LambdaContext(stage, 1024, 900.0, arn)
    return lambda event: handler(event, context)


IN, ART = resources.INPUT, resources.ARTIFACTS


@pytest.fixture
def s3(monkeypatch):
    with resources.on_moto(monkeypatch) as (s3, _ddb):
        s3.create_bucket(Bucket="not-allowed")
        yield s3


def get_json(s3, bucket: str, key: str):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def plan(event: dict, name: str = "exec-1") -> dict:
    arn = f"arn:aws:states:us-east-1:1:execution:sm:{name}"
    return load_handler("plan")({"input": event, "execution_name": name, "execution_arn": arn})


def test_images_are_deduplicated_and_written_as_the_items_manifest(s3) -> None:
    uris = [f"s3://{IN}/a.jpg", f"s3://{IN}/ü b.jpg", f"s3://{IN}/a.jpg", f"s3://{IN}/a.jpg"]
    out = plan({"images": uris, "score": 0.4})
    assert out["batch_id"] == "exec-1"
    assert (out["count"], out["submitted"], out["duplicates"]) == (2, 4, 2)
    # no model deployed here: the template's ResizeMode "model" stays unresolved (Plan resolves
    # it from a readable sidecar: test_resize_follows_the_model_when_none_is_given)
    assert out["params"] == {"score": 0.4, "iou": 0.45, "resize": "model"}
    assert out["items"] == {"bucket": ART, "key": "batches/exec-1/items.json"}
    items = get_json(s3, ART, out["items"]["key"])
    assert items == [{"image_id": image_id_for(u), "uri": u, "bucket": IN, "key": u[len(IN) + 6:]}
                     for u in uris[:2]]
    doc = get_json(s3, ART, "batches/exec-1/plan.json")
    assert doc["duplicates"] == [uris[0], uris[0]] and doc["unique"] == 2
    assert out["execution_arn"].endswith(":exec-1")
    assert len(json.dumps(out)) < 1024


def test_explicit_batch_id_wins_and_reruns_give_the_same_ids(s3) -> None:
    a = plan(load_event("plan_images"), name="first")
    b = plan(load_event("plan_images"), name="second")
    assert a["batch_id"] == b["batch_id"] == "sample-images"
    assert get_json(s3, ART, a["items"]["key"]) == get_json(s3, ART, b["items"]["key"])


def test_prefix_is_paginated_and_skips_folders_and_non_images(s3) -> None:
    for i in range(1003):
        s3.put_object(Bucket=IN, Key=f"many/img{i:04d}.JPG", Body=b"x")
    s3.put_object(Bucket=IN, Key="many/", Body=b"")
    s3.put_object(Bucket=IN, Key="many/readme.txt", Body=b"x")
    out = plan({"prefix": f"s3://{IN}/many/"})
    assert out["count"] == 1003
    assert get_json(s3, ART, "batches/exec-1/plan.json")["skipped_non_images"] == 1


def test_a_prefix_lists_every_extension_the_decoder_reads(s3) -> None:
    """One extension list (contract.IMAGE_EXTENSIONS): a GIF, which OpenCV decodes, is an
    image in a prefix as it is on the local runner's command line; a HEIC is not listed."""
    from yolo_sfn.contract import IMAGE_EXTENSIONS

    for ext in (*IMAGE_EXTENSIONS, ".heic"):
        s3.put_object(Bucket=IN, Key=f"kinds/a{ext}", Body=b"x")
    out = plan({"prefix": f"s3://{IN}/kinds/"})
    assert ".gif" in IMAGE_EXTENSIONS and out["count"] == len(IMAGE_EXTENSIONS)
    assert get_json(s3, ART, "batches/exec-1/plan.json")["skipped_non_images"] == 1

def test_empty_prefix_is_an_input_error(s3) -> None:
    with pytest.raises(InputValidationError, match=r"^prefix: no image objects"):
        plan({"prefix": f"s3://{IN}/nothing-here/"})


@pytest.mark.parametrize(("name", "body"), [
    ("m.json", json.dumps([f"s3://{IN}/x.jpg", f"s3://{IN}/写真 1.png", f"s3://{IN}/x.jpg"])),
    ("m.txt", f"# list\ns3://{IN}/x.jpg\n\ns3://{IN}/写真 1.png\ns3://{IN}/x.jpg\n"),
    ("m.csv", f"uri,label\ns3://{IN}/x.jpg,a\ns3://{IN}/写真 1.png,b\ns3://{IN}/x.jpg,c\n"),
])
def test_manifest_formats(s3, name: str, body: str) -> None:
    s3.put_object(Bucket=IN, Key=f"manifests/{name}", Body=body.encode())
    out = plan({"manifest": f"s3://{IN}/manifests/{name}"})
    assert (out["count"], out["duplicates"]) == (2, 1)
    assert [i["uri"] for i in get_json(s3, ART, out["items"]["key"])] == [
        f"s3://{IN}/x.jpg", f"s3://{IN}/写真 1.png"]


def test_manifest_entries_are_validated_by_line(s3) -> None:
    s3.put_object(Bucket=IN, Key="m.txt", Body=f"s3://{IN}/x.jpg\nnot-a-uri\n".encode())
    with pytest.raises(S3UriError, match=r"^manifest line 2: "):
        plan({"manifest": f"s3://{IN}/m.txt"})


def test_images_outside_the_allow_list_are_left_to_preprocess(s3) -> None:
    """One forbidden URI must not fail the execution: it stays an item, and Preprocess records
    it on that image (tests/functional/test_stages_pipeline.py)."""
    out = plan({"images": [f"s3://{IN}/a.jpg", "s3://not-allowed/x.jpg"]})
    assert out["count"] == 2
    assert [i["uri"] for i in get_json(s3, ART, out["items"]["key"])][1] == "s3://not-allowed/x.jpg"


def test_plan_pins_the_model_version_for_the_whole_execution(s3, monkeypatch) -> None:
    """Stages load exactly the pinned versions (no HEAD per invoke); a missing model fails the
    execution at Plan, before any child starts."""
    from yolo_sfn.errors import ModelError

    monkeypatch.setenv("MODEL_URI", f"s3://{ART}/models/m.tflite")
    with pytest.raises(ModelError, match=r"m\.tflite: model file unavailable"):
        plan({"images": [f"s3://{IN}/a.jpg"]})
    s3.put_object(Bucket=ART, Key="models/m.tflite", Body=b"model")
    s3.put_object(Bucket=ART, Key="models/m.tflite.json", Body=b"{}")
    ref = plan({"images": [f"s3://{IN}/a.jpg"]})["model_ref"]
    head = s3.head_object(Bucket=ART, Key="models/m.tflite")
    assert ref == {"uri": f"s3://{ART}/models/m.tflite", "version": head["ETag"],
                   "meta_version": s3.head_object(Bucket=ART, Key="models/m.tflite.json")["ETag"]}


def test_allow_list_guards_what_plan_reads(s3) -> None:
    s3.put_object(Bucket="not-allowed", Key="m.json", Body=f'["s3://{IN}/a.jpg"]'.encode())
    with pytest.raises(S3UriError, match=r"^manifest: "):
        plan({"manifest": "s3://not-allowed/m.json"})
    with pytest.raises(S3UriError, match=r"^prefix: "):
        plan({"prefix": "s3://not-allowed/"})
    # `yolo-sfn submit` writes long lists to s3://<artifacts>/manifests/: readable by Plan
    s3.put_object(Bucket=ART, Key="manifests/big.json", Body=f'["s3://{IN}/a.jpg"]'.encode())
    assert plan({"manifest": f"s3://{ART}/manifests/big.json"})["count"] == 1
    with pytest.raises(S3UriError, match=r"^manifest: "):
        plan({"manifest": f"s3://{ART}/batches/other/items.json"})


def test_missing_manifest(s3) -> None:
    with pytest.raises(ObjectNotFoundError, match=f"s3://{IN}/missing.json"):
        plan({"manifest": f"s3://{IN}/missing.json"})


def test_bad_input_fails_before_touching_s3(s3) -> None:
    with pytest.raises(InputValidationError, match=r"^images\|prefix\|manifest: "):
        plan({"images": [f"s3://{IN}/a.jpg"], "prefix": f"s3://{IN}/"})
    assert "Contents" not in s3.list_objects_v2(Bucket=ART)
