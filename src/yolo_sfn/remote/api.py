"""The CLI's view of a deployed stack: submit, status, results, describe, list.

Everything goes through boto3's normal credential/region chain (``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` ...), so the same code talks to AWS, to moto server
mode, or to an in-process ``mock_aws``.

Where the data comes from:

* stack: CloudFormation Outputs ``StateMachineArn`` / ``ArtifactsBucketName`` (falling back to
  the logical ids ``DetectStateMachine`` / ``ArtifactsBucket`` / ``ResultsTable``);
* progress: the Distributed Map run's item counts (``list_map_runs`` / ``describe_map_run``);
* per-image records: the results table (``--stack``), else the per-image result JSONs under
  ``results/<batch_id>/`` in the artifacts bucket - both written by the Store function with
  ``timings_ms`` per stage passed and ``error: {stage, type, message}``;
* per-stage outputs: the per-batch intermediates ``tmp/<batch_id>/<child_id>/{inputs.npz,
  heads.npz, detections.json}`` (the record's ``child_id`` / the result's ``child.id``), from
  which each image's part is picked (expired by a lifecycle rule; then only what the result
  JSON keeps).
  Child executions of a Distributed Map are not read: moto keeps no history for them, and
  on AWS reading one history per image would be slow and costly.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from yolo_sfn import env
from yolo_sfn.contract import (
    IMAGE_STAGES,
    INTERMEDIATE_PREFIX,
    INTERMEDIATES,
    RESULTS_PREFIX,
    as_prefix,
    intermediate_key,
)
from yolo_sfn.errors import InputValidationError, S3UriError, YoloSfnError
from yolo_sfn.workflow import batchlock
from yolo_sfn.workflow.s3uri import split_s3_uri
from yolo_sfn.workflow.stages import decimals_to_numbers

MAX_INLINE_INPUT = 200 * 1024  # Step Functions input limit is 256 KiB; keep a margin
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class RemoteError(YoloSfnError):
    """The stack/execution cannot be found or read."""


def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


# --- stack ---------------------------------------------------------------------------------
@dataclass
class StackInfo:
    name: str
    state_machine_arn: str
    bucket: str | None
    table: str | None


def stack_info(name: str, cfn: Any = None) -> StackInfo:
    cfn = cfn or client("cloudformation")
    try:
        desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
    except Exception as e:
        raise RemoteError(f"stack {name}: {e}") from e
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    physical: dict[str, str] = {}
    if not {"StateMachineArn", "ArtifactsBucketName", "ResultsTableName"} <= outputs.keys():
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name):
            for r in page["StackResourceSummaries"]:
                physical[r["LogicalResourceId"]] = r["PhysicalResourceId"]
    arn = outputs.get("StateMachineArn") or physical.get("DetectStateMachine")
    if not arn:
        raise RemoteError(f"stack {name} has no StateMachineArn output / DetectStateMachine")
    return StackInfo(name, arn, outputs.get("ArtifactsBucketName") or physical.get(
        "ArtifactsBucket"), outputs.get("ResultsTableName") or physical.get("ResultsTable"))


def execution_arn(execution: str, stack: str | None) -> str:
    """An ARN as is; a name needs ``--stack`` (ARN = state machine ARN + name)."""
    if execution.startswith("arn:"):
        return execution
    if not stack:
        raise InputValidationError(f"{execution!r}: give an execution ARN, or a name with --stack")
    sm = stack_info(stack).state_machine_arn
    return sm.replace(":stateMachine:", ":execution:", 1) + ":" + execution


# --- submit --------------------------------------------------------------------------------
def build_input(
    uris: list[str], manifest: str | None = None, batch_id: str | None = None
) -> dict:
    """Execution input (exactly one source) from the command line."""
    if manifest and uris:
        raise InputValidationError("give S3 URIs or --manifest, not both")
    if manifest:
        split_s3_uri(manifest)
        inp: dict[str, Any] = {"manifest": manifest}
    elif len(uris) == 1 and uris[0].endswith("/"):
        split_s3_uri(uris[0])
        inp = {"prefix": uris[0]}
    elif uris:
        for u in uris:
            if not split_s3_uri(u)[1] or u.endswith("/"):
                raise S3UriError(f"{u}: a prefix must be the only input")
        inp = {"images": list(uris)}
    else:
        raise InputValidationError("nothing to submit: give s3:// URIs, a prefix or --manifest")
    if batch_id is not None:
        from yolo_sfn.workflow.messages import BATCH_ID_RE

        if not BATCH_ID_RE.fullmatch(batch_id):
            raise InputValidationError(
                f"--batch-id {batch_id[:100]!r}: must be 1-80 characters [A-Za-z0-9._-], "
                "starting with a letter or digit")
        inp["batch_id"] = batch_id
    return inp


def _execution_name(batch_id: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "-", batch_id or "batch")[:40]
    return f"{base}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def submit(
    stack: str, uris: list[str], *, manifest: str | None = None, batch_id: str | None = None,
    name: str | None = None,
) -> dict:
    """Start one execution; inputs too large for the payload limit go via a manifest.
    The input is checked before AWS is asked anything, so a bad one is named as such."""
    inp = build_input(uris, manifest, batch_id)
    info = stack_info(stack)
    via_manifest = None
    if len(json.dumps(inp).encode()) > MAX_INLINE_INPUT:
        if not info.bucket:
            raise RemoteError(f"stack {stack}: no ArtifactsBucketName to hold the manifest")
        key = f"manifests/{batch_id or uuid.uuid4().hex}.json"
        client("s3").put_object(Bucket=info.bucket, Key=key, Body=json.dumps(inp["images"]),
                                ContentType="application/json")
        via_manifest = f"s3://{info.bucket}/{key}"
        inp = {"manifest": via_manifest, **({"batch_id": batch_id} if batch_id else {})}
    resp = client("stepfunctions").start_execution(
        stateMachineArn=info.state_machine_arn, name=name or _execution_name(batch_id),
        input=json.dumps(inp))
    return {"execution_arn": resp["executionArn"], "input": inp, "manifest_written": via_manifest,
            "images": len(uris)}


def wait(arn: str, *, poll_s: float = 2.0, timeout_s: float | None = None, on_poll=None) -> dict:
    sfn = client("stepfunctions")
    start = time.monotonic()
    while True:
        desc = sfn.describe_execution(executionArn=arn)
        if on_poll is not None:
            on_poll(desc)
        if desc["status"] in TERMINAL:
            return desc
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            return desc
        time.sleep(poll_s)


# --- one execution -------------------------------------------------------------------------
@dataclass
class ExecutionView:
    arn: str
    desc: dict
    input: dict
    output: dict | None
    batch_id: str | None
    bucket: str | None
    table: str | None
    stack: str | None = None
    extra: dict = field(default_factory=dict)


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _plan_output(sfn: Any, arn: str) -> dict | None:
    """Plan's result (``batch_id``, ``items``) from the parent execution's history."""
    try:
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        for page in pages:
            for ev in page["events"]:
                for detail in ev.values():
                    if isinstance(detail, dict) and "output" in detail:
                        out = _loads(detail["output"])
                        out = out.get("Payload", out) if isinstance(out, dict) else out
                        if isinstance(out, dict) and "batch_id" in out and "items" in out:
                            return out
    except Exception:  # history is best effort (permissions, moto gaps)
        return None
    return None


def view(execution: str, stack: str | None = None) -> ExecutionView:
    sfn = client("stepfunctions")
    arn = execution_arn(execution, stack)
    try:
        desc = sfn.describe_execution(executionArn=arn)
    except Exception as e:
        raise RemoteError(f"execution {arn}: {e}") from e
    inp = _loads(desc.get("input")) or {}
    out = _loads(desc.get("output"))
    info = stack_info(stack) if stack else None
    batch_id = (out or {}).get("batch_id") or inp.get("batch_id")
    bucket = None
    for uri in ((out or {}).get("summary_uri"), (out or {}).get("results_prefix")):
        if isinstance(uri, str) and uri.startswith("s3://"):
            bucket = split_s3_uri(uri)[0]
            break
    if batch_id is None or bucket is None:
        plan = _plan_output(sfn, arn) or {}
        batch_id = batch_id or plan.get("batch_id")
        items = plan.get("items") or {}
        bucket = bucket or (items.get("bucket") if isinstance(items, dict) else None)
    bucket = bucket or (info.bucket if info else None)
    return ExecutionView(arn, desc, inp, out, batch_id, bucket, info.table if info else None,
                         stack)


def map_run_counts(arn: str) -> dict | None:
    """Summed ``itemCounts`` of the execution's map runs (None when there is none yet)."""
    sfn = client("stepfunctions")
    try:
        runs = sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
    except Exception:
        return None
    if not runs:
        return None
    total: dict[str, int] = {}
    for r in runs:
        counts = sfn.describe_map_run(mapRunArn=r["mapRunArn"]).get("itemCounts", {})
        for k, v in counts.items():
            total[k] = total.get(k, 0) + int(v)
    return total


def records(ev: ExecutionView) -> list[dict]:
    """Per-image records of the batch: table items, else the result JSONs."""
    if not ev.batch_id:
        return []
    if ev.table:
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        pages = client("dynamodb").get_paginator("query").paginate(
            TableName=ev.table, KeyConditionExpression="batch_id = :b",
            ExpressionAttributeValues={":b": {"S": ev.batch_id}}, ConsistentRead=True)
        items = ({k: des.deserialize(v) for k, v in raw.items()}
                 for page in pages for raw in page.get("Items", []))
        return [decimals_to_numbers(i) for i in items if not batchlock.is_lock(i)]
    if not ev.bucket:
        return []
    s3 = client("s3")
    out = []
    prefix = f"{_prefixes(ev)[1]}{ev.batch_id}/"
    with suppress(ValueError, TypeError, AttributeError):  # the key Summarize reported
        prefix = split_s3_uri(ev.output["results_prefix"])[1] or prefix
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ev.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".json") and not obj["Key"].endswith("/summary.json"):
                doc = json.loads(s3.get_object(Bucket=ev.bucket, Key=obj["Key"])["Body"].read())
                doc.setdefault("result_uri", f"s3://{ev.bucket}/{obj['Key']}")
                doc.setdefault("num_detections", len(doc.get("detections") or []))
                out.append(doc)
    return out


def split_by_execution(recs: list[dict], arn: str) -> tuple[list[dict], list[dict]]:
    """``(this execution's records, records another execution of the same batch id wrote)``.
    Records without ``execution_arn`` (older stacks) count as this execution's."""
    mine, other = [], []
    for rec in recs:
        (other if rec.get("execution_arn") and rec["execution_arn"] != arn else mine).append(rec)
    return mine, other


def stage_counts(recs: list[dict]) -> dict[str, dict[str, int]]:
    """Per stage: how many images passed it and how many failed at it."""
    counts = {s: {"passed": 0, "failed": 0} for s in IMAGE_STAGES}
    for rec in recs:
        err = rec.get("error") or None
        failed_at = err.get("stage") if isinstance(err, dict) else None
        timings = rec.get("timings_ms") or {}
        for stage in IMAGE_STAGES:
            if stage == failed_at:
                counts[stage]["failed"] += 1
            elif stage in timings and (stage != "store" or rec.get("status") == "succeeded"):
                counts[stage]["passed"] += 1
    return counts


def status(execution: str, stack: str | None = None) -> dict:
    ev = view(execution, stack)
    recs, other = split_by_execution(records(ev), ev.arn)
    counts = map_run_counts(ev.arn)
    d = ev.desc
    return {
        "execution_arn": ev.arn,
        "status": d["status"],
        "start": _iso(d.get("startDate")),
        "stop": _iso(d.get("stopDate")),
        "batch_id": ev.batch_id,
        "items": {
            "total": (counts or {}).get("total"),
            "running": (counts or {}).get("running"),
            "succeeded": sum(1 for r in recs if r.get("status") == "succeeded"),
            "failed": sum(1 for r in recs if r.get("status") == "failed"),
            "recorded": len(recs),
            "recorded_by_other_executions": len(other),
            "map_run": counts,
        },
        "stages": stage_counts(recs),
        "error": d.get("error"),
        "cause": d.get("cause"),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def describe(execution: str, stack: str | None = None) -> dict:
    ev = view(execution, stack)
    d = ev.desc
    return {
        "execution_arn": ev.arn, "name": d.get("name"), "state_machine_arn":
        d.get("stateMachineArn"), "status": d["status"], "start": _iso(d.get("startDate")),
        "stop": _iso(d.get("stopDate")), "input": ev.input, "output": ev.output,
        "error": d.get("error"), "cause": d.get("cause"), "batch_id": ev.batch_id,
        "artifacts_bucket": ev.bucket, "map_runs": map_run_counts(ev.arn),
    }


def detect_state_machines() -> list[str]:
    """State machines named like the template's (``<stack>-detect``)."""
    sfn = client("stepfunctions")
    return [m["stateMachineArn"]
            for page in sfn.get_paginator("list_state_machines").paginate()
            for m in page["stateMachines"] if m["name"].endswith("-detect")]


def list_executions(
    stack: str | None, status_filter: str | None = None, limit: int = 50
) -> list[dict]:
    """Newest first; without ``stack``, every ``*-detect`` state machine in the region."""
    sfn = client("stepfunctions")
    machines = [stack_info(stack).state_machine_arn] if stack else detect_state_machines()
    out = []
    for arn in machines:
        kwargs: dict[str, Any] = {"stateMachineArn": arn}
        if status_filter:
            kwargs["statusFilter"] = status_filter
        for page in sfn.get_paginator("list_executions").paginate(**kwargs):
            for e in page["executions"]:
                out.append({"name": e["name"], "execution_arn": e["executionArn"],
                            "state_machine": arn.rsplit(":", 1)[-1], "status": e["status"],
                            "start": _iso(e.get("startDate")), "stop": _iso(e.get("stopDate"))})
    out.sort(key=lambda r: str(r["start"]), reverse=True)
    return out[:limit]


# --- per-stage results ---------------------------------------------------------------------
def _get(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    except Exception as e:  # moto/AWS raise ClientError 404 on some paths
        if "NoSuchKey" in str(e) or "404" in str(e):
            return None
        raise


def _stage_state(rec: dict, stage: str) -> str:
    err = rec.get("error") if isinstance(rec.get("error"), dict) else None
    if err and err.get("stage") == stage:
        return "failed"
    if stage == "store":
        return "passed" if rec.get("status") == "succeeded" else "not reached"
    return "passed" if stage in (rec.get("timings_ms") or {}) else "not reached"


def _child_id(rec: dict) -> str | None:
    child = rec.get("child") if isinstance(rec.get("child"), dict) else {}
    return rec.get("child_id") or child.get("id")


def _image_part(data: bytes, stage: str, image_id: str) -> dict:
    """This image's part of a batch intermediate (see :mod:`yolo_sfn.workflow.stages`)."""
    if stage == "postprocess":
        dets = json.loads(data).get(image_id)
        return {"detections": dets} if dets is not None else {}
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if stage == "preprocess":
            ids = [str(i) for i in z["image_ids"]]
            if image_id not in ids:
                return {}
            x = z["inputs"][ids.index(image_id)]
            return {"input_shape": [1, *x.shape], "input_dtype": str(x.dtype)}
        prefix = image_id + "."
        names = [k[len(prefix):] for k in z.files if k.startswith(prefix)]
        if not names:
            return {}
        # compact: head_i holds only the rows at objectness >= score, (kept rows, 5 + C)
        return {"heads": {n: list(z[prefix + n].shape) for n in sorted(names)
                          if n.startswith("head_")}, "compact": "compact" in names}


def _stage_environment(bucket: str) -> dict:
    """The environment of the stack's functions, found as the functions whose ``RESULTS_BUCKET``
    is ``bucket`` (every stage shares template.yaml ``Globals``); ``{}`` if none can be read."""
    with suppress(Exception):
        for page in client("lambda").get_paginator("list_functions").paginate():
            for fn in page.get("Functions", []):
                variables = (fn.get("Environment") or {}).get("Variables") or {}
                if variables.get(env.BUCKET) == bucket:
                    return variables
    return {}


def _prefixes(ev: ExecutionView) -> tuple[str, str]:
    """``(intermediate, results)`` prefixes the stack's functions were deployed with
    (``INTERMEDIATE_PREFIX`` / ``RESULTS_PREFIX``, template.yaml ``Globals``); where they
    cannot be read, the template's defaults. Asked once per view."""
    if "prefixes" not in ev.extra:
        variables = _stage_environment(ev.bucket) if ev.bucket else {}
        ev.extra["prefixes"] = (
            as_prefix(variables.get(env.INTERMEDIATE_PREFIX, INTERMEDIATE_PREFIX)),
            as_prefix(variables.get(env.RESULTS_PREFIX, RESULTS_PREFIX)))
    return ev.extra["prefixes"]


def _intermediate(s3: Any, ev: ExecutionView, rec: dict, stage: str) -> dict:
    child = _child_id(rec)
    key = intermediate_key(_prefixes(ev)[0], ev.batch_id, child, INTERMEDIATES[stage])
    data = _get(s3, ev.bucket, key) if ev.bucket and child else None
    part = _image_part(data, stage, rec["image_id"]) if data is not None else {}
    return {"artifact": f"s3://{ev.bucket}/{key}", "artifact_present": bool(part), **part}


def _result_detections(s3: Any, rec: dict) -> list | None:
    if "detections" in rec:
        return rec["detections"]
    if not rec.get("result_uri"):
        return None
    body = _get(s3, *split_s3_uri(rec["result_uri"]))
    return json.loads(body).get("detections") if body else None


def results(execution: str, stack: str | None = None, stage: str = "store") -> list[dict]:
    """Each image's output of ``stage`` (see the module doc for the sources)."""
    if stage not in IMAGE_STAGES:
        raise InputValidationError(f"--stage {stage!r} not in {IMAGE_STAGES}")
    ev = view(execution, stack)
    s3 = client("s3")
    rows = []
    mine, _ = split_by_execution(records(ev), ev.arn)
    for rec in sorted(mine, key=lambda r: r.get("uri", "")):
        row: dict[str, Any] = {
            "image_id": rec.get("image_id"), "uri": rec.get("uri"), "stage": stage,
            "state": _stage_state(rec, stage),
            "ms": (rec.get("timings_ms") or {}).get(stage),
            "error": rec.get("error") if _stage_state(rec, stage) == "failed" else None,
        }
        if stage == "store":
            row.update(status=rec.get("status"), num_detections=rec.get("num_detections"),
                       class_counts=rec.get("class_counts"), result_uri=rec.get("result_uri"))
            if rec.get("result_uri") and "detections" not in rec:
                b, k = split_s3_uri(rec["result_uri"])
                body = _get(s3, b, k)
                row["result"] = json.loads(body) if body else None
            elif "detections" in rec:
                row["result"] = rec
        elif row["state"] == "passed":
            row.update(_intermediate(s3, ev, rec, stage))
            if stage == "postprocess" and not row["artifact_present"]:
                row["detections"] = _result_detections(s3, rec)  # intermediates expired
        rows.append(row)
    return rows
