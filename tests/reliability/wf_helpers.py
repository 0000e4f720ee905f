"""Shared checks for the workflow-level reliability tests (local engine on moto).

The expectations are derived, not hard-coded: retry counts and waits come from the ASL's own
``Retry``/``Catch`` blocks, detections from :class:`yolo_sfn.core.detector.Detector`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from yolo_sfn.workflow import batchlock

ROOT = Path(__file__).resolve().parents[2]
STAGE_STATES = {"preprocess": "Preprocess", "infer": "Infer", "postprocess": "Postprocess",
                "store": "Store", "plan": "Plan", "summarize": "Summarize"}
DEFAULT_MAX_ATTEMPTS = 3  # ASL defaults (States Language spec)
DEFAULT_INTERVAL = 1
DEFAULT_BACKOFF = 2.0


# --- the ASL -----------------------------------------------------------------------------
@cache
def asl() -> dict:
    from yolo_sfn.local.template import read_template

    return read_template(ROOT / "template.yaml").asl


def find_state(name: str, states: dict | None = None) -> dict | None:
    """A state by name anywhere in the definition (Map/Parallel bodies included)."""
    states = asl()["States"] if states is None else states
    for sname, state in states.items():
        if sname == name:
            return state
        for body in [state.get("ItemProcessor"), state.get("Iterator"),
                     *(state.get("Branches") or [])]:
            if body:
                found = find_state(name, body["States"])
                if found is not None:
                    return found
    return None


def _matches(equals: list[str], error: str) -> bool:
    if error in equals or "States.ALL" in equals:
        return True
    return "States.TaskFailed" in equals and error != "States.Timeout"


def retry_plan(state_name: str, error: str, failures: int | None) -> dict:
    """What the ASL says happens when ``state_name`` fails ``failures`` times in a row with
    ``error`` (None: every time): attempts made, the waits between them, and whether the
    error ends in a Catch (True), succeeds (False) or is uncaught (None)."""
    state = find_state(state_name)
    assert state is not None, f"no state {state_name} in the ASL"
    retrier = next((r for r in state.get("Retry", []) if _matches(r["ErrorEquals"], error)),
                   None)
    max_attempts = 0 if retrier is None else retrier.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS)
    fails = failures if failures is not None else max_attempts + 1
    retries = min(fails, max_attempts)
    waits = []
    if retrier is not None:
        interval = retrier.get("IntervalSeconds", DEFAULT_INTERVAL)
        backoff = retrier.get("BackoffRate", DEFAULT_BACKOFF)
        cap = retrier.get("MaxDelaySeconds")
        for k in range(retries):
            w = interval * backoff**k
            waits.append(min(w, cap) if cap else w)
    gives_up = fails > max_attempts
    caught = any(_matches(c["ErrorEquals"], error) for c in state.get("Catch", [])) \
        if gives_up else False
    # every retry is one more attempt; the last attempt either succeeds or gives up
    return {"attempts": retries + 1, "waits": waits, "caught": caught, "gives_up": gives_up}


# --- reading what a run left behind ------------------------------------------------------
def table_items(eng, batch_id: str, *, lock: bool = False) -> list[dict]:
    """The batch's image items (raw DynamoDB form); ``lock``: its lock item too (taken by
    Plan, freed by Summarize: ``yolo_sfn.workflow.batchlock``)."""
    ddb = eng.client("dynamodb")
    items = []
    pages = ddb.get_paginator("query").paginate(
        TableName=eng.stack.table, KeyConditionExpression="batch_id = :b",
        ExpressionAttributeValues={":b": {"S": batch_id}}, ConsistentRead=True)
    for page in pages:
        items.extend(i for i in page.get("Items", [])
                     if lock or i["image_id"]["S"] != batchlock.LOCK_ID)
    return items


def result_keys(eng, batch_id: str) -> list[str]:
    s3 = eng.client("s3")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=eng.stack.bucket, Prefix=f"results/{batch_id}/"):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def assert_exactly_once(eng, run, uris: list[str]) -> dict:
    """Every submitted URI is exactly one summary entry, and one table item + one result JSON
    unless its entry says no result could be recorded (``MissingResult``)."""
    assert run.summary is not None, f"no summary: {run.status} {run.error} {run.cause}"
    summary = run.summary
    unique = list(dict.fromkeys(uris))
    entries = Counter(i["uri"] for i in summary["images"])
    assert sorted(entries) == sorted(unique), (
        f"summary URIs differ: missing {set(unique) - set(entries)}, "
        f"extra {set(entries) - set(unique)}")
    assert max(entries.values()) == 1, f"duplicated entries {entries.most_common(3)}"
    assert summary["submitted"] == len(uris)
    assert summary["unique"] == len(unique)
    dups = Counter(uris) - Counter(unique)
    assert sorted(summary["duplicates"]) == sorted(dups.elements())
    assert summary["succeeded"] + summary["failed"] == len(unique)
    assert summary["succeeded"] == sum(i["status"] == "succeeded" for i in summary["images"])
    batch = summary["batch_id"]
    recorded = [i["image_id"] for i in summary["images"]
                if (i.get("error") or {}).get("type") != "MissingResult"]
    items = table_items(eng, batch)
    ids = Counter(i["image_id"]["S"] for i in items)
    assert sorted(ids) == sorted(recorded), "table items != summary entries"
    keys = result_keys(eng, batch)
    per_image = Counter(k.rsplit("/", 1)[-1] for k in keys if not k.endswith("summary.json"))
    assert sorted(per_image) == sorted(f"{i}.json" for i in recorded), (
        "result JSONs in S3 != summary entries")
    return {i["uri"]: i for i in summary["images"]}


TRACEBACK = re.compile(r"Traceback|File \"|line \d+, in ")


def assert_clear_error(entry: dict, *, stage: str | set[str], error: str | set[str],
                       names: str | None = None) -> None:
    """A failure entry names the stage, the error class and the input, in one clean line."""
    err = entry.get("error")
    assert entry["status"] == "failed" and err, entry
    stages = {stage} if isinstance(stage, str) else stage
    types = {error} if isinstance(error, str) else error
    assert err["stage"] in stages, f"stage {err['stage']!r}, expected {stages}: {err}"
    assert err["type"] in types, f"type {err['type']!r}, expected {types}: {err}"
    msg = err.get("message") or ""
    assert msg.strip(), f"empty message: {err}"
    assert not TRACEBACK.search(msg), f"traceback in the message: {msg!r}"
    assert len(msg) < 2000
    if names is not None:
        assert names in msg, f"message does not name {names!r}: {msg!r}"


# --- detections ----------------------------------------------------------------------------
@cache
def detector(model_path: str):
    from yolo_sfn.core.detector import Detector

    return Detector(model_path)


def expected_detections(model_path: Path, data: bytes) -> tuple[tuple[int, int], list[dict]]:
    from yolo_sfn.core.image import decode_image

    rgb = decode_image(data, name="expected")
    dets = [d.to_dict() for d in detector(str(model_path)).detect(rgb)]
    return (int(rgb.shape[1]), int(rgb.shape[0])), json.loads(json.dumps(dets))


def assert_same_detections(got: list[dict], want: list[dict], tol: float = 1e-4) -> None:
    assert len(got) == len(want), f"{len(got)} detections, Detector gives {len(want)}"
    for g, w in zip(sorted(got, key=_key), sorted(want, key=_key), strict=True):
        assert (g["label"], g["class_id"]) == (w["label"], w["class_id"]), (g, w)
        assert abs(g["score"] - w["score"]) <= tol, (g, w)
        for a, b in zip(g["box"], w["box"], strict=True):
            assert abs(a - b) <= max(tol, 1e-3), (g, w)


def _key(d: dict) -> Any:
    return (d["class_id"], round(d["box"][0], 1), round(d["box"][1], 1), -d["score"])
