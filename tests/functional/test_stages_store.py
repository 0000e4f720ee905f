"""Store / RecordBatchFailure / Summarize handlers on moto: idempotency, failure records, the
summary lists every item exactly once."""

from __future__ import annotations

import json

import pytest
from fixtures import stack as resources

from yolo_sfn.errors import ObjectNotFoundError
from yolo_sfn.local.invoke import LambdaContext
from yolo_sfn.workflow import handlers
from yolo_sfn.workflow.events import load_event
from yolo_sfn.workflow.stages import MAX_FAILURES_IN_OUTPUT, image_id_for


def load_handler(stage: str):
    """``functions/<stage>/app.py:handler``, called as Lambda calls it: with a context."""
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stage}"
    handler, context = handlers.load_handler(stage), LambdaContext(stage, 1024, 900.0, arn)
    return lambda event: handler(event, context)


IN, ART, TABLE = resources.INPUT, resources.ARTIFACTS, resources.TABLE
DETECTIONS = [
    {"label": "dog", "class_id": 16, "score": 0.9, "box": [10, 20, 30, 40],
     "box_norm": [0.1, 0.2, 0.3, 0.4]},
    {"label": "dog", "class_id": 16, "score": 0.8, "box": [1, 2, 3, 4], "box_norm": [0, 0, 0, 0]},
    {"label": "bicycle", "class_id": 1, "score": 0.7, "box": [1, 2, 3, 4],
     "box_norm": [0, 0, 0, 0]},
]


@pytest.fixture
def aws_env(monkeypatch):
    with resources.on_moto(monkeypatch) as clients:
        yield clients


def keys(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=ART, Prefix=prefix).get("Contents", [])]


def items_of(ddb, batch_id: str) -> list[dict]:
    return ddb.query(TableName=TABLE, KeyConditionExpression="batch_id = :b",
                     ExpressionAttributeValues={":b": {"S": batch_id}})["Items"]


def store_event(s3) -> dict:
    """``events/store.json`` (dog, girl succeeded; not-an-image failed in Preprocess) with its
    batch's detections file in place."""
    event = load_event("store")
    ok = [it["image_id"] for it in event["items"] if "error" not in it]
    s3.put_object(Bucket=ART, Key=event["keys"]["detections"],
                  Body=json.dumps({i: DETECTIONS for i in ok}).encode())
    return event


def result_keys(event: dict) -> list[str]:
    return sorted(f"results/{event['batch_id']}/{it['image_id']}.json" for it in event["items"])


def test_store_twice_gives_one_item_and_one_object_per_image(aws_env) -> None:
    s3, ddb = aws_env
    event = store_event(s3)
    first = load_handler("store")(event)
    assert load_handler("store")(event) == first == {
        "batch_id": event["batch_id"], "child_id": event["child_id"], "size": 3,
        "succeeded": 2, "failed": 1}
    assert keys(s3, "results/") == result_keys(event)
    items = {i["image_id"]["S"]: i for i in items_of(ddb, event["batch_id"])}
    dog = items[event["items"][0]["image_id"]]
    assert dog["status"] == {"S": "succeeded"} and dog["num_detections"] == {"N": "3"}
    assert dog["class_counts"]["M"] == {"dog": {"N": "2"}, "bicycle": {"N": "1"}}
    assert set(dog["timings_ms"]["M"]) == {"preprocess", "infer", "postprocess", "store"}
    assert dog["child_id"] == {"S": event["child_id"]}
    bad = items[event["items"][2]["image_id"]]
    assert bad["status"] == {"S": "failed"}
    assert bad["error"]["M"]["stage"] == {"S": "preprocess"}
    assert bad["error"]["M"]["type"] == {"S": "ImageDecodeError"}
    result = json.loads(s3.get_object(Bucket=ART, Key=result_keys(event)[0])["Body"].read())
    assert {"image_id", "uri", "status", "width", "height", "detections", "timings_ms", "model",
            "error", "child", "spans_ms", "batch_stage_ms"} <= set(result)
    assert result["child"] == {"id": event["child_id"], "size": 3}
    assert set(result["spans_ms"]) == {"preprocess", "infer", "postprocess", "store"}


def test_store_without_its_detections_file_fails_the_stage(aws_env) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"detections\.json"):
        load_handler("store")(load_event("store"))


def test_unprocessed_items_are_retried_until_written(aws_env) -> None:
    """BatchWriteItem may return UnprocessedItems (throttling): they are sent again; what
    stays unprocessed fails the stage (TransientAwsError, retried by Step Functions)."""
    from yolo_sfn.errors import TransientAwsError
    from yolo_sfn.workflow import stages
    from yolo_sfn.workflow.config import StageConfig

    _, ddb = aws_env
    calls = []

    class Throttled:
        def __init__(self, left: int) -> None:
            self.left = left

        def batch_write_item(self, RequestItems):
            (todo,) = RequestItems.values()
            calls.append(len(todo))
            if self.left:
                self.left -= 1
                ddb.batch_write_item(RequestItems={TABLE: todo[:1]})
                return {"UnprocessedItems": {TABLE: todo[1:]}}
            return ddb.batch_write_item(RequestItems=RequestItems)

    cfg = StageConfig.from_env()
    records = [{"batch_id": "b", "image_id": f"{i:020d}", "status": "succeeded"}
               for i in range(30)]
    stages.put_records(cfg, records, Throttled(2), sleep=lambda s: None)
    assert calls == [25, 24, 23, 5] and len(items_of(ddb, "b")) == 30
    class Never:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    with pytest.raises(TransientAwsError, match="3 items still unprocessed after 6 attempts"):
        stages.put_records(cfg, records[:3], Never(), sleep=lambda s: None)


def test_record_batch_failure_records_every_pending_image_at_the_failed_stage(aws_env) -> None:
    s3, ddb = aws_env
    event = load_event("store_failure")
    out = load_handler("store")(event)
    assert (out["size"], out["succeeded"], out["failed"]) == (3, 0, 3)
    errors = {i["image_id"]["S"]: i["error"]["M"] for i in items_of(ddb, event["batch_id"])}
    pending, earlier = event["items"][:2], event["items"][2]
    for it in pending:  # still pending when Postprocess timed out
        err = errors[it["image_id"]]
        assert (err["stage"], err["type"]) == ({"S": "postprocess"}, {"S": "States.Timeout"})
        assert "timed out" in err["message"]["S"]
    assert errors[earlier["image_id"]]["type"] == {"S": "ImageDecodeError"}  # its own error
    result = json.loads(s3.get_object(Bucket=ART, Key=result_keys(event)[0])["Body"].read())
    assert result["status"] == "failed" and result["detections"] == []
    # a later success for the same batch overwrites the failures (reruns converge)
    load_handler("store")(store_event(s3))
    statuses = sorted(i["status"]["S"] for i in items_of(ddb, event["batch_id"]))
    assert statuses == ["failed", "succeeded", "succeeded"]


def write_items(s3, batch_id: str, uris: list[str]) -> dict:
    items = [{"image_id": image_id_for(u), "uri": u} for u in uris]
    key = f"batches/{batch_id}/items.json"
    s3.put_object(Bucket=ART, Key=key, Body=json.dumps(items).encode())
    return {"bucket": ART, "key": key}


def test_summary_lists_every_item_once_and_marks_missing_ones(aws_env) -> None:
    s3, _ = aws_env
    ok = store_event(s3) | {"execution_arn": "arn:x"}
    load_handler("store")(ok)
    # a record of another image in the same batch, not in the manifest, is ignored
    stray = load_event("store_failure") | {"execution_arn": "arn:x", "items": [
        {"image_id": "0" * 20, "uri": f"s3://{IN}/stray.jpg"}]}
    load_handler("store")(stray)
    uris = [it["uri"] for it in ok["items"]] + [f"s3://{IN}/lost.jpg"]
    items = write_items(s3, ok["batch_id"], uris)
    out = load_handler("summarize")({"batch_id": ok["batch_id"], "items": items,
                                     "execution_arn": "arn:x"})
    assert (out["unique"], out["succeeded"], out["failed"]) == (4, 2, 2)
    assert out["class_counts"] == {"dog": 4, "bicycle": 2}
    assert out["summary_uri"] == f"s3://{ART}/results/{ok['batch_id']}/summary.json"
    summary = json.loads(s3.get_object(Bucket=ART, Key=f"results/{ok['batch_id']}/summary.json")
                         ["Body"].read())
    assert [i["uri"] for i in summary["images"]] == uris
    assert [i["status"] for i in summary["images"]] == [
        "succeeded", "succeeded", "failed", "failed"]
    assert summary["images"][2]["error"]["type"] == "ImageDecodeError"
    assert summary["images"][3]["error"] == {
        "stage": "unknown", "type": "MissingResult",
        "message": summary["images"][3]["error"]["message"]}
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
    items = write_items(s3, ok["batch_id"], [ok["items"][0]["uri"]])
    event = {"batch_id": ok["batch_id"], "items": items}
    assert load_handler("summarize")(event | {"execution_arn": "arn:run-1"})["succeeded"] == 1
    rerun = load_handler("summarize")(event | {"execution_arn": "arn:run-2"})
    assert (rerun["succeeded"], rerun["failed"]) == (0, 1)
    assert rerun["failures"][0]["error"]["type"] == "MissingResult"
