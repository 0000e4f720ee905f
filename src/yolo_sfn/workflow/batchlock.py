"""One running execution per batch id: a lock item in the results table.

Two executions with the same ``batch_id`` would share ``batches/<id>/items.json`` and
``plan.json`` (the second Plan overwriting the manifest the first's Map reads), the
``tmp/<id>/`` intermediates, the results and the table items, and each Summarize would count
the other's images. So Plan takes the batch's lock before it writes anything, and Summarize
releases it once the summary is written:

* free, or held by this same execution (Plan retried): take it (idempotent);
* held by a RUNNING execution: refuse, :class:`BatchInUseError` naming it;
* held by an execution that is no longer running (succeeded, failed, aborted, timed out, or
  gone: it died before its Summarize released the lock): take it over, with a conditional
  write, so of two executions taking over at once only one wins.

Table item (PK ``batch_id``, SK ``image_id``)::

    {"batch_id": <id>, "image_id": LOCK_ID, "execution_arn": <holder>, "started": ISO 8601 UTC}

Image ids are 20 hex digits (``stages.image_id_for``), so ``LOCK_ID`` never names an image;
whoever reads a batch's items skips it (:func:`is_lock`).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from yolo_sfn.errors import BatchInUseError, YoloSfnError
from yolo_sfn.workflow import storage

LOCK_ID = "#lock"
RUNNING = "RUNNING"
# DescribeExecution errors that mean the holder cannot be running (a running execution always
# exists, and its ARN was valid when it took the lock)
GONE = ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "InvalidArn")
TAKE_TRIES = 3


def is_lock(item: dict) -> bool:
    """Whether a deserialized table item of a batch is its lock, not an image."""
    return item.get("image_id") == LOCK_ID


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def _aws_error(what: str, e: Exception) -> Exception:
    """Throttling/5xx/connection -> TransientAwsError (Plan's Retry), denied ->
    AccessDeniedError, anything else -> YoloSfnError naming the call."""
    mapped = storage.map_error(e, what=what)
    return mapped if mapped is not e else YoloSfnError(f"{what}: {_code(e) or type(e).__name__}")


def _put(ddb: Any, table: str, batch_id: str, me: str, stale: str | None) -> dict | None:
    """Write the lock for ``me`` if it is free or ours (``stale`` None), or if ``stale`` still
    holds it. Returns None when written, else the item that stopped it (``{}``: gone)."""
    if stale is None:
        cond, values = "attribute_not_exists(batch_id) OR execution_arn = :me", {":me": me}
    else:
        cond, values = "execution_arn = :stale", {":stale": stale}
    try:
        ddb.put_item(
            TableName=table,
            Item={"batch_id": {"S": batch_id}, "image_id": {"S": LOCK_ID},
                  "execution_arn": {"S": me}, "started": {"S": _now_iso()}},
            ConditionExpression=cond,
            ExpressionAttributeValues={k: {"S": v} for k, v in values.items()},
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except (ClientError, BotoCoreError) as e:
        if _code(e) != "ConditionalCheckFailedException":
            raise _aws_error(f"dynamodb put {table} (batch lock of {batch_id!r})", e) from e
        item = e.response.get("Item") or {}
        return {k: next(iter(v.values())) for k, v in item.items()}
    return None


def _holder_state(sfn: Any, arn: str) -> tuple[str, str]:
    """``(status, start time)`` of the holding execution; ``("GONE", "")`` if it does not
    exist."""
    try:
        desc = sfn.describe_execution(executionArn=arn)
    except (ClientError, BotoCoreError) as e:
        if _code(e) in GONE:
            return "GONE", ""
        raise _aws_error(f"states describe-execution {arn} (batch lock holder)", e) from e
    start = desc.get("startDate")
    return desc["status"], start.isoformat() if hasattr(start, "isoformat") else str(start or "")


def acquire(table: str, batch_id: str, execution_arn: str, *, ddb: Any, sfn: Any) -> None:
    """Take the lock of ``batch_id`` for ``execution_arn`` (see the module docstring); raises
    :class:`BatchInUseError` while another execution running now holds it."""
    stale = None
    for _ in range(TAKE_TRIES):
        holder = _put(ddb, table, batch_id, execution_arn, stale)
        if holder is None:
            return
        arn = holder.get("execution_arn", "")
        if not arn:  # released (or never held) since we looked: try a plain take again
            stale = None
            continue
        status, started = _holder_state(sfn, arn)
        if status == RUNNING:
            raise BatchInUseError(
                f"batch {batch_id!r} is being processed by execution {arn} (started "
                f"{started or holder.get('started', '?')}); wait for it to finish or use "
                "another batch id")
        stale = arn  # finished without releasing: take it over, if nobody else did
    raise BatchInUseError(
        f"batch {batch_id!r}: other executions took its lock {TAKE_TRIES} times while this "
        "one tried; wait for them to finish or use another batch id")


def release(table: str, batch_id: str, execution_arn: str, *, ddb: Any) -> bool:
    """Drop the lock if ``execution_arn`` holds it (a retried Summarize: already dropped;
    another execution's lock: left alone). Returns whether it was dropped."""
    try:
        ddb.delete_item(TableName=table,
                        Key={"batch_id": {"S": batch_id}, "image_id": {"S": LOCK_ID}},
                        ConditionExpression="execution_arn = :me",
                        ExpressionAttributeValues={":me": {"S": execution_arn}})
    except (ClientError, BotoCoreError) as e:
        if _code(e) == "ConditionalCheckFailedException":
            return False
        raise _aws_error(f"dynamodb delete {table} (batch lock of {batch_id!r})", e) from e
    return True
