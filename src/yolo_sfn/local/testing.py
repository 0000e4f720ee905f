"""A toy project with the workflow contract's shape, for testing the local engine itself.

``write_toy_project(root)`` writes ``template.yaml``, ``statemachine/detect.asl.json`` and six
tiny ``functions/<stage>/app.py`` handlers that follow the contract (logical ids, env var names,
result/summary schemas) without any model: "detections" are one box per image whose label is
the file extension. The engine tests use it so they do not depend on the real stages.
"""

from __future__ import annotations

import json
from pathlib import Path

STAGES = ("preprocess", "infer", "postprocess", "store")

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: toy yolo-sfn stack (local engine tests)
Parameters:
  ModelUri: {Type: String, Default: "s3://none/model.tflite"}
  InputBucketNames: {Type: String, Default: "yolo-sfn-input"}
  MapConcurrency: {Type: Number, Default: 4}
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
    Timeout: 30
    MemorySize: 256
    Environment:
      Variables:
        RESULTS_BUCKET: !Ref ArtifactsBucket
        RESULTS_TABLE: !Ref ResultsTable
        MODEL_URI: !Ref ModelUri
        INPUT_BUCKETS: !Ref InputBucketNames
        RESULTS_PREFIX: results/
Resources:
  ArtifactsBucket:
    Type: AWS::S3::Bucket
  ResultsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: batch_id, AttributeType: S}
        - {AttributeName: image_id, AttributeType: S}
      KeySchema:
        - {AttributeName: batch_id, KeyType: HASH}
        - {AttributeName: image_id, KeyType: RANGE}
{functions}
  DetectStateMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-detect"
      DefinitionUri: statemachine/detect.asl.json
      DefinitionSubstitutions:
        ArtifactsBucket: !Ref ArtifactsBucket
{substitutions}
      Policies:
        - LambdaInvokePolicy: {FunctionName: !Ref PlanFunction}
Outputs:
  StateMachineArn: {Value: !Ref DetectStateMachine}
  ArtifactsBucketName: {Value: !Ref ArtifactsBucket}
  ResultsTableName: {Value: !Ref ResultsTable}
"""

FUNCTION = """\
  {lid}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/{stage}/
"""
FUNCTION_ENV = """\
      Environment:
        Variables:
          STAGE_NAME: {stage}
"""

RETRY = [{
    "ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException",
                    "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
                    "TransientAwsError"],
    "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0,
}]


def _lid(stage: str) -> str:
    return f"{stage.capitalize()}Function"


def _task(stage: str, nxt: str | None, infer_timeout_s: int) -> dict:
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": f"${{{_lid(stage)}Arn}}", "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "TimeoutSeconds": infer_timeout_s if stage == "infer" else 30,
        "Retry": RETRY,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                   "Next": f"Record{stage.capitalize()}Failure"}],
    }
    if nxt:
        state["Next"] = nxt
    else:
        state["End"] = True
    return state


def _record(stage: str) -> dict:
    """Pass state stamping the failed stage; the shared RecordFailure Task stores it."""
    return {"Type": "Pass", "Result": stage, "ResultPath": "$.failed_stage",
            "Next": "RecordFailure"}


RECORD_FAILURE = {
    "Type": "Task",
    "Resource": "arn:aws:states:::lambda:invoke",
    "Parameters": {"FunctionName": "${StoreFunctionArn}", "Payload.$": "$"},
    "OutputPath": "$.Payload",
    "Retry": RETRY,
    "End": True,
}


def asl(infer_timeout_s: int = 30, batch_size: int | None = None) -> dict:
    states = {}
    for i, stage in enumerate(STAGES):
        nxt = STAGES[i + 1].capitalize() if i + 1 < len(STAGES) else None
        states[stage.capitalize()] = _task(stage, nxt, infer_timeout_s)
        states[f"Record{stage.capitalize()}Failure"] = _record(stage)
    states["RecordFailure"] = RECORD_FAILURE
    doc = {
        "Comment": "toy detect workflow",
        "StartAt": "Plan",
        "States": {
            "Plan": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": "${PlanFunctionArn}", "Payload.$": "$"},
                     "OutputPath": "$.Payload", "Next": "DetectImages"},
            "DetectImages": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.items.bucket", "Key.$": "$.items.key"},
                },
                "ItemSelector": {"batch_id.$": "$.batch_id",
                                 "bucket.$": "$$.Map.Item.Value.bucket",
                                 "key.$": "$$.Map.Item.Value.key"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Preprocess",
                    "States": states,
                },
                "MaxConcurrency": 4,
                "Label": "DetectImages",
                "ResultPath": None,
                "Next": "Summarize",
            },
            "Summarize": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                          "Parameters": {"FunctionName": "${SummarizeFunctionArn}",
                                         "Payload": {"batch_id.$": "$.batch_id",
                                                     "execution_arn.$": "$$.Execution.Id"}},
                          "OutputPath": "$.Payload", "End": True},
        },
    }
    if batch_size:
        detect = doc["States"]["DetectImages"]
        detect["ItemBatcher"] = {"MaxItemsPerBatch": batch_size,
                                 "BatchInput": {"batch_id.$": "$.batch_id"}}
        detect["ItemSelector"] = {"bucket.$": "$$.Map.Item.Value.bucket",
                                  "key.$": "$$.Map.Item.Value.key"}
        detect["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "EXPRESS"
    return doc


COMMON = '''
import hashlib, json, os, time
import boto3
from yolo_sfn import env
from yolo_sfn.errors import ObjectNotFoundError

s3 = boto3.client("s3")
BUCKET = os.environ[env.BUCKET]
TABLE = os.environ[env.TABLE]


def image_id(bucket, key):
    return hashlib.sha256(f"s3://{bucket}/{key}".encode()).hexdigest()[:16]


def unpack(event):
    """(batch_id, items, batched): an ItemBatcher envelope, a carried batch or one image."""
    if "Items" in event:
        return event["BatchInput"]["batch_id"], [dict(i) for i in event["Items"]], True
    if "items" in event:
        return event["batch_id"], event["items"], True
    return event["batch_id"], [event], False


def pack(batch_id, items, batched, **extra):
    return {"batch_id": batch_id, "items": items, **extra} if batched else items[0]


def item_error(stage, kind, message):
    return {"stage": stage, "type": kind, "message": message}
'''

HANDLERS = {
    "plan": '''
def handler(event, context):
    batch_id = event.get("batch_id") or "b" + hashlib.sha1(
        json.dumps(event, sort_keys=True).encode()).hexdigest()[:10]
    uris = event.get("images")
    if "manifest" in event:
        b, k = event["manifest"][5:].split("/", 1)
        uris = json.loads(s3.get_object(Bucket=b, Key=k)["Body"].read())
    elif "prefix" in event:
        b, p = event["prefix"][5:].split("/", 1)
        listed = s3.list_objects_v2(Bucket=b, Prefix=p).get("Contents", [])
        uris = [f"s3://{b}/{o['Key']}" for o in listed]
    seen, items, dups = set(), [], []
    for uri in uris:
        if uri in seen:
            dups.append(uri)
            continue
        seen.add(uri)
        bucket, key = uri[5:].split("/", 1)
        items.append({"bucket": bucket, "key": key})
    manifest_key = f"batches/{batch_id}/items.json"
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(items))
    s3.put_object(Bucket=BUCKET, Key=f"batches/{batch_id}/plan.json",
                  Body=json.dumps({"submitted": len(uris), "duplicates": dups}))
    return {"batch_id": batch_id, "count": len(items),
            "items": {"bucket": BUCKET, "key": manifest_key}}
''',
    "preprocess": '''
def handler(event, context):
    batch_id, items, batched = unpack(event)
    for item in items:
        t = time.perf_counter()
        item["batch_id"] = batch_id
        try:
            size = s3.head_object(Bucket=item["bucket"], Key=item["key"])["ContentLength"]
        except s3.exceptions.ClientError as e:
            err = ObjectNotFoundError(f"s3://{item['bucket']}/{item['key']}: {e}")
            if not batched:
                raise err from e
            item["error"] = item_error("preprocess", type(err).__name__, str(err))
            continue
        item.update(size=size, timings_ms={"preprocess": (time.perf_counter() - t) * 1000})
    return pack(batch_id, items, batched)
''',
    "infer": '''
def handler(event, context):
    batch_id, items, batched = unpack(event)
    for item in items:
        if not item.get("error"):
            item["timings_ms"] = {**item["timings_ms"], "infer": 1.0}
    return pack(batch_id, items, batched)
''',
    "postprocess": '''
def handler(event, context):
    batch_id, items, batched = unpack(event)
    for item in items:
        if item.get("error"):
            continue
        label = item["key"].rsplit(".", 1)[-1].lower()
        det = {"label": label, "class_id": 0, "score": 0.9, "box": [0, 0, 1, 1],
               "box_norm": [0, 0, 1, 1]}
        item.update(detections=[det], timings_ms={**item["timings_ms"], "postprocess": 1.0})
    return pack(batch_id, items, batched)
''',
    "store": '''
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from decimal import Decimal

ddb = boto3.client("dynamodb")


def to_item(record):
    plain = json.loads(json.dumps(record), parse_float=Decimal)
    return {k: TypeSerializer().serialize(v) for k, v in plain.items()}


def caught(event):
    """The stage-wide error a Catch put on the event, as an item error (None: no error)."""
    if not event.get("error"):
        return None
    cause = event["error"].get("Cause") or "{}"
    try:
        msg = json.loads(cause).get("errorMessage", cause)
    except ValueError:
        msg = cause
    return item_error(event["failed_stage"], event["error"].get("Error"), msg)


def record(batch_id, item, error):
    iid = image_id(item["bucket"], item["key"])
    uri = f"s3://{item['bucket']}/{item['key']}"
    dets = [] if error else item.get("detections", [])
    timings = {**item.get("timings_ms", {}), "store": 1.0}
    result = {"image_id": iid, "uri": uri, "status": "failed" if error else "succeeded",
              "width": 1, "height": 1, "detections": dets, "timings_ms": timings,
              "model": {"name": "toy", "precision": "none", "weights_sha256": ""},
              "error": error}
    key = f"results/{batch_id}/{iid}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(result))
    counts = {}
    for d in dets:
        counts[d["label"]] = counts.get(d["label"], 0) + 1
    return to_item({
        "batch_id": batch_id, "image_id": iid, "uri": uri,
        "status": result["status"], "result_uri": f"s3://{BUCKET}/{key}",
        "num_detections": len(dets), "class_counts": counts, "timings_ms": timings,
        "error": error})


def handler(event, context):
    batch_id, items, batched = unpack(event)
    stage_error = caught(event)
    rows = [record(batch_id, item, (item.get("error") if batched else None) or stage_error)
            for item in items]
    if not batched:
        ddb.put_item(TableName=TABLE, Item=rows[0])
        return {"image_id": rows[0]["image_id"]["S"], "status": rows[0]["status"]["S"]}
    for start in range(0, len(rows), 25):
        ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": r}}
                                                   for r in rows[start:start + 25]]})
    failed = sum(1 for r in rows if r["status"]["S"] == "failed")
    return {"batch_id": batch_id, "size": len(rows), "succeeded": len(rows) - failed,
            "failed": failed}
''',
    "summarize": '''
from boto3.dynamodb.types import TypeDeserializer

ddb = boto3.client("dynamodb")


def plain(v):
    return json.loads(json.dumps(v, default=float))


def handler(event, context):
    batch_id = event["batch_id"]
    plan = json.loads(s3.get_object(Bucket=BUCKET, Key=f"batches/{batch_id}/plan.json")
                      ["Body"].read())
    items = json.loads(s3.get_object(Bucket=BUCKET, Key=f"batches/{batch_id}/items.json")
                       ["Body"].read())
    rows = ddb.query(TableName=TABLE, KeyConditionExpression="batch_id = :b",
                     ExpressionAttributeValues={":b": {"S": batch_id}})["Items"]
    des = TypeDeserializer()
    by_id = {r["image_id"]["S"]: plain({k: des.deserialize(v) for k, v in r.items()})
             for r in rows}
    images, counts = [], {}
    for it in items:
        iid = image_id(it["bucket"], it["key"])
        row = by_id.get(iid) or {"status": "failed", "result_uri": None, "num_detections": 0,
                                 "error": {"stage": "unknown", "type": "MissingResult",
                                           "message": "no record"}, "class_counts": {}}
        images.append({"image_id": iid, "uri": f"s3://{it['bucket']}/{it['key']}",
                       "status": row["status"], "result_uri": row["result_uri"],
                       "num_detections": row["num_detections"], "error": row["error"]})
        for label, n in (row.get("class_counts") or {}).items():
            counts[label] = counts.get(label, 0) + n
    ok = sum(1 for i in images if i["status"] == "succeeded")
    uri = f"s3://{BUCKET}/results/{batch_id}/summary.json"
    summary = {"batch_id": batch_id, "execution_arn": event.get("execution_arn"),
               "submitted": plan["submitted"], "unique": len(items),
               "duplicates": plan["duplicates"], "succeeded": ok,
               "failed": len(images) - ok, "class_counts": counts, "summary_uri": uri,
               "results_prefix": f"s3://{BUCKET}/results/{batch_id}/", "images": images}
    s3.put_object(Bucket=BUCKET, Key=f"results/{batch_id}/summary.json",
                  Body=json.dumps(summary))
    return {"batch_id": batch_id, "succeeded": ok, "failed": len(images) - ok,
            "summary_uri": uri, "results_prefix": summary["results_prefix"]}
''',
}


def write_toy_project(root: Path | str, *, per_function_env: bool = True,
                      infer_timeout_s: int = 30, batch_size: int | None = None) -> Path:
    """Write the toy project under ``root``; returns ``root``. ``per_function_env`` gives each
    function its own ``STAGE_NAME`` (exercises the engine's per-call environment path).
    ``infer_timeout_s`` is the Infer Task's ``TimeoutSeconds``: a short one makes an injected
    timeout fault quick to test, but it also bounds every other Infer call of the stack (a
    loaded machine can stall a Map thread for seconds), so only the timeout test shortens it.
    ``batch_size``: the Map batches images (ItemBatcher, EXPRESS children) and every stage
    handles a batch, a per-image error travelling with its item, as the real workflow does."""
    root = Path(root)
    all_stages = ("plan", *STAGES, "summarize")
    block = FUNCTION + (FUNCTION_ENV if per_function_env else "")
    functions = "".join(block.format(lid=_lid(s), stage=s) for s in all_stages)
    subs = "".join(f"        {_lid(s)}Arn: !GetAtt {_lid(s)}.Arn\n" for s in all_stages)
    (root / "statemachine").mkdir(parents=True, exist_ok=True)
    (root / "template.yaml").write_text(
        TEMPLATE.replace("{functions}\n", functions).replace("{substitutions}\n", subs)
    )
    (root / "statemachine" / "detect.asl.json").write_text(
        json.dumps(asl(infer_timeout_s, batch_size), indent=2))
    for stage in all_stages:
        folder = root / "functions" / stage
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.py").write_text(COMMON + HANDLERS[stage])
    return root
