"""One running execution per batch id (``yolo_sfn.workflow.batchlock``), through the Plan and
Summarize handlers on moto: a second execution with a batch id that a running one holds fails
fast at Plan naming the holder, before it writes anything; the same execution's Plan retried
passes; a finished (or gone) holder's batch id is taken over; Summarize frees it; nobody reads
the lock as an image."""

from __future__ import annotations

import json

import boto3
import pytest
from fixtures import stack as resources

from yolo_sfn.errors import BatchInUseError
from yolo_sfn.local.invoke import LambdaContext
from yolo_sfn.workflow import batchlock, handlers
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.stages import query_batch

IN, ART, TABLE = resources.INPUT, resources.ARTIFACTS, resources.TABLE
BATCH = "shared"
DEFINITION = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}})


def call(stage: str, event: dict) -> dict:
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stage}"
    return handlers.load_handler(stage)(event, LambdaContext(stage, 1024, 900.0, arn))


@pytest.fixture
def env(monkeypatch):
    with resources.on_moto(monkeypatch) as (s3, ddb):
        for key in ("a.jpg", "b.jpg"):
            s3.put_object(Bucket=IN, Key=key, Body=b"x")
        sfn = boto3.client("stepfunctions", region_name=resources.REGION)
        sm = sfn.create_state_machine(
            name="yolo-sfn-detect", definition=DEFINITION,
            roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]

        def start(name: str) -> str:  # moto leaves it RUNNING until stopped
            return sfn.start_execution(stateMachineArn=sm, name=name)["executionArn"]

        yield s3, ddb, sfn, start


def plan(arn: str, images=("a.jpg",), batch_id: str = BATCH) -> dict:
    return call("plan", {"input": {"images": [f"s3://{IN}/{k}" for k in images],
                                   "batch_id": batch_id},
                         "execution_name": arn.rsplit(":", 1)[-1], "execution_arn": arn})


def summarize(out: dict) -> dict:
    return call("summarize", {"batch_id": out["batch_id"], "items": out["items"],
                              "execution_arn": out["execution_arn"]})


def lock(ddb) -> dict | None:
    item = ddb.get_item(TableName=TABLE, ConsistentRead=True, Key={
        "batch_id": {"S": BATCH}, "image_id": {"S": batchlock.LOCK_ID}}).get("Item")
    return {k: next(iter(v.values())) for k, v in item.items()} if item else None


def get_json(s3, key: str):
    return json.loads(s3.get_object(Bucket=ART, Key=key)["Body"].read())


def test_a_second_execution_of_a_running_batch_fails_at_plan_naming_the_holder(env) -> None:
    s3, ddb, _, start = env
    first, second = start("first"), start("second")
    out = plan(first, images=("a.jpg",))
    assert lock(ddb)["execution_arn"] == first
    assert plan(first, images=("a.jpg",))["count"] == 1  # Plan retried in the same execution
    with pytest.raises(BatchInUseError) as err:
        plan(second, images=("a.jpg", "b.jpg"))
    message = str(err.value)
    assert f"batch '{BATCH}' is being processed by execution {first}" in message
    assert "(started 20" in message and "use another batch id" in message
    # the refused execution wrote nothing under the batch id
    assert len(get_json(s3, out["items"]["key"])) == 1
    assert get_json(s3, f"batches/{BATCH}/plan.json")["execution_arn"] == first
    assert lock(ddb)["execution_arn"] == first


def test_summarize_frees_the_batch_id_for_the_next_execution(env) -> None:
    _, ddb, _, start = env
    first, second = start("first"), start("second")
    out = summarize(plan(first))
    assert out["unique"] == 1 and out["failed"] == 1  # no image stage ran: MissingResult
    assert lock(ddb) is None
    again = plan(second, images=("a.jpg", "b.jpg"))  # a re-run overwrites, as before
    assert again["count"] == 2 and lock(ddb)["execution_arn"] == second
    summarize({**again, "execution_arn": first})  # a stale Summarize (of the first)
    assert lock(ddb)["execution_arn"] == second  # ... leaves another execution's lock alone


@pytest.mark.parametrize("end", ["ABORTED", "GONE"])
def test_a_holder_that_no_longer_runs_is_taken_over(env, end) -> None:
    _, ddb, sfn, start = env
    second = start("second")
    if end == "ABORTED":  # stopped (or failed, timed out) before its Summarize freed the id
        first = start("first")
        plan(first)
        sfn.stop_execution(executionArn=first)
    else:  # an execution that does not exist (any more) cannot be running
        first = second.replace(":second", ":long-gone")
        plan(first)
    assert lock(ddb)["execution_arn"] == first
    assert plan(second)["count"] == 1
    assert lock(ddb)["execution_arn"] == second


def test_the_lock_is_never_read_as_an_image(env) -> None:
    _, ddb, _, start = env
    first = start("first")
    plan(first)
    cfg = StageConfig.from_env()
    assert query_batch(cfg, BATCH, ddb=ddb) == {}
    assert lock(ddb) is not None


def test_a_plan_without_an_execution_takes_no_lock(env) -> None:
    _, ddb, _, _ = env
    out = call("plan", {"images": [f"s3://{IN}/a.jpg"], "batch_id": BATCH})  # a bare input
    assert out["count"] == 1 and lock(ddb) is None
