"""Store / RecordFailure / Summarize handlers on moto: idempotency, failure records, the
summary lists every item exactly once."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from yolo_sfn.errors import ObjectNotFoundError
from yolo_sfn.workflow import aws, testing
from yolo_sfn.workflow.events import load_event
from yolo_sfn.workflow.handlers import load_handler
from yolo_sfn.workflow.stages import MAX_FAILURES_IN_OUTPUT, image_id_for

IN, ART, TABLE = testing.INPUT, testing.ARTIFACTS, testing.TABLE
DETECTIONS = [
    {"label": "dog", "class_id": 16, "score": 0.9, "box": [10, 20, 30, 40],
     "box_norm": [0.1, 0.2, 0.3, 0.4]},
    {"label": "dog", "class_id": 16, "score": 0.8, "box": [1, 2, 3, 4], "box_norm": [0, 0, 0, 0]},
    {"label": "bicycle", "class_id": 1, "score": 0.7, "box": [1, 2, 3, 4],
     "box_norm": [0, 0, 0, 0]},
]


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", testing.REGION)
    for k, v in testing.stage_environment().items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        aws.reset_clients()
        s3 = boto3.client("s3", region_name=testing.REGION)
        ddb = boto3.client("dynamodb", region_name=testing.REGION)
        testing.create_resources(s3, ddb)
        yield s3, ddb
    aws.reset_clients()


def keys(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=ART, Prefix=prefix).get("Contents", [])]


def items_of(ddb, batch_id: str) -> list[dict]:
    return ddb.query(TableName=TABLE, KeyConditionExpression="batch_id = :b",
                     ExpressionAttributeValues={":b": {"S": batch_id}})["Items"]


def store_event(s3) -> dict:
    event = load_event("store")
    s3.put_object(Bucket=ART, Key=event["detections_key"], Body=json.dumps(DETECTIONS).encode())
    return event


def test_store_twice_gives_one_item_and_one_object(aws_env) -> None:
    s3, ddb = aws_env
    event = store_event(s3)
    first = load_handler("store")(event)
    second = load_handler("store")(event)
    assert first["result_uri"] == second["result_uri"] == (
        f"s3://{ART}/results/{event['batch_id']}/{event['image_id']}.json")
    assert keys(s3, "results/") == [f"results/{event['batch_id']}/{event['image_id']}.json"]
    [item] = items_of(ddb, event["batch_id"])
    assert item["status"] == {"S": "succeeded"} and item["num_detections"] == {"N": "3"}
    assert item["class_counts"]["M"] == {"dog": {"N": "2"}, "bicycle": {"N": "1"}}
    assert set(item["timings_ms"]["M"]) == {"preprocess", "infer", "postprocess", "store"}
    result = json.loads(s3.get_object(Bucket=ART, Key=keys(s3, "results/")[0])["Body"].read())
    assert {"image_id", "uri", "status", "width", "height", "detections", "timings_ms", "model",
            "error"} <= set(result)
    assert result["detections"] == DETECTIONS and result["error"] is None
    assert (result["width"], result["height"]) == (768, 576)


def test_store_without_detections_object_is_not_found(aws_env) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"detections\.json"):
        load_handler("store")(load_event("store"))


def test_record_failure_from_a_caught_lambda_error(aws_env) -> None:
    s3, ddb = aws_env
    event = load_event("store_failure")
    out = load_handler("store")(event)
    assert out["status"] == "failed" and out["num_detections"] == 0
    assert out["error"]["stage"] == "preprocess" and out["error"]["type"] == "ImageDecodeError"
    assert "not an image" in out["error"]["message"]
    [item] = items_of(ddb, event["batch_id"])
    assert item["error"]["M"]["type"] == {"S": "ImageDecodeError"}
    result = json.loads(s3.get_object(Bucket=ART, Key=keys(s3, "results/")[0])["Body"].read())
    assert result["status"] == "failed" and result["detections"] == []
    # a later success for the same image overwrites the failure (reruns converge)
    success = store_event(s3)
    load_handler("store")(success)
    [item] = items_of(ddb, event["batch_id"])
    assert item["status"] == {"S": "succeeded"} and item["error"] == {"NULL": True}


def write_items(s3, batch_id: str, uris: list[str]) -> dict:
    items = [{"image_id": image_id_for(u), "uri": u} for u in uris]
    key = f"batches/{batch_id}/items.json"
    s3.put_object(Bucket=ART, Key=key, Body=json.dumps(items).encode())
    return {"bucket": ART, "key": key}


def test_summary_lists_every_item_once_and_marks_missing_ones(aws_env) -> None:
    s3, _ = aws_env
    ok = store_event(s3) | {"execution_arn": "arn:x"}
    bad = load_event("store_failure") | {"image_id": image_id_for(f"s3://{IN}/bad.jpg"),
                                         "uri": f"s3://{IN}/bad.jpg", "execution_arn": "arn:x"}
    load_handler("store")(ok)
    load_handler("store")(bad)
    # a record of another image in the same batch, not in the manifest, is ignored
    load_handler("store")(bad | {"image_id": "0" * 20, "uri": f"s3://{IN}/stray.jpg"})
    uris = [ok["uri"], bad["uri"], f"s3://{IN}/lost.jpg"]
    items = write_items(s3, ok["batch_id"], uris)
    out = load_handler("summarize")({"batch_id": ok["batch_id"], "items": items,
                                     "execution_arn": "arn:x"})
    assert (out["unique"], out["succeeded"], out["failed"]) == (3, 1, 2)
    assert out["class_counts"] == {"dog": 2, "bicycle": 1}
    assert out["summary_uri"] == f"s3://{ART}/results/{ok['batch_id']}/summary.json"
    summary = json.loads(s3.get_object(Bucket=ART, Key=f"results/{ok['batch_id']}/summary.json")
                         ["Body"].read())
    assert [i["uri"] for i in summary["images"]] == uris
    assert [i["status"] for i in summary["images"]] == ["succeeded", "failed", "failed"]
    assert summary["images"][1]["error"]["type"] == "ImageDecodeError"
    assert summary["images"][2]["error"] == {
        "stage": "unknown", "type": "MissingResult",
        "message": summary["images"][2]["error"]["message"]}
    for key in ("batch_id", "execution_arn", "submitted", "unique", "duplicates", "succeeded",
                "failed", "class_counts", "summary_uri", "results_prefix", "images"):
        assert key in summary, key


def test_summarize_output_stays_small_for_large_batches(aws_env) -> None:
    s3, _ = aws_env
    uris = [f"s3://{IN}/img{i:05d}.jpg" for i in range(2000)]
    items = write_items(s3, "big", uris)
    out = load_handler("summarize")({"batch_id": "big", "items": items})
    assert out["failed"] == 2000 and out["failures_truncated"] is True
    assert len(out["failures"]) == MAX_FAILURES_IN_OUTPUT
    assert len(json.dumps(out)) < 16 * 1024  # far below the 256 KiB state limit


def test_summary_ignores_records_of_previous_executions(aws_env) -> None:
    s3, _ = aws_env
    ok = store_event(s3) | {"execution_arn": "arn:run-1"}
    load_handler("store")(ok)
    items = write_items(s3, ok["batch_id"], [ok["uri"]])
    event = {"batch_id": ok["batch_id"], "items": items}
    assert load_handler("summarize")(event | {"execution_arn": "arn:run-1"})["succeeded"] == 1
    rerun = load_handler("summarize")(event | {"execution_arn": "arn:run-2"})
    assert (rerun["succeeded"], rerun["failed"]) == (0, 1)
    assert rerun["failures"][0]["error"]["type"] == "MissingResult"
