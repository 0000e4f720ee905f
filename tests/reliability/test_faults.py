"""Fault injection through the local runner: Retry and Catch do what the ASL says.

Deployed with ``BatchSize=1`` so each image is its own child and a fault selected by image
glob hits exactly one image (batches of several: tests/functional/test_workflow_e2e.py).
One "fault storm" execution: each image gets one fault (transient S3 errors, Lambda
throttling, a crashing handler, a handler past its timeout, a Store that can never write),
Plan and Summarize get transient faults too. The expected attempts, waits and outcomes are
derived from the ASL's Retry/Catch blocks (wf_helpers.retry_plan), never hard-coded. Then the
batch is re-run clean, an execution that FAILED is re-run (moto has no RedriveExecution, so a
redrive is a re-run with the same batch_id), and S3 + DynamoDB must hold exactly one result
per image every time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import pytest
from wf_helpers import (
    ROOT,
    assert_clear_error,
    assert_exactly_once,
    assert_same_detections,
    expected_detections,
    find_state,
    result_keys,
    retry_plan,
    table_items,
)

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault

INPUT = "yolo-sfn-input"
SAMPLES = ["dog.jpg", "person.jpg", "horses.jpg", "kite.jpg", "girl.png"]
TIMEOUT_STAGE = "postprocess"  # deployed with a 1 s function Timeout so the fault is quick

# image name -> (stage, fault kind, times, ASL state, error the state sees)
STORM = {
    "transient-then-ok": ("preprocess", "s3_transient", 2, "Preprocess", "TransientAwsError"),
    "transient-always": ("infer", "s3_transient", None, "Infer", "TransientAwsError"),
    "throttle-then-ok": ("infer", "throttle", 5, "Infer", "Lambda.TooManyRequestsException"),
    "throttle-always": ("postprocess", "throttle", None, "Postprocess",
                        "Lambda.TooManyRequestsException"),
    "crash-once": ("postprocess", "crash", 1, "Postprocess", "RuntimeError"),
    # the Task's TimeoutSeconds outlasts the function's Timeout by 12 s (Lambda's cold start):
    # the function times out first, with Lambda's own error, and the Task then catches it
    "timeout-once": (TIMEOUT_STAGE, "timeout", 1, "Postprocess", "Sandbox.Timedout"),
    "store-crash-once": ("store", "crash", 1, "Store", "RuntimeError"),
    "store-always-throttled": ("store", "throttle", None, "Store",
                               "Lambda.TooManyRequestsException"),
    "clean": None,
}
BATCH_FAULTS = [("plan", "throttle", 2, "Plan", "Lambda.TooManyRequestsException"),
                ("summarize", "s3_transient", 1, "Summarize", "TransientAwsError")]


def key(name: str) -> str:
    return f"faults/{name}.jpg"


def uri(name: str) -> str:
    return f"s3://{INPUT}/{key(name)}"


def source(name: str) -> str:
    return SAMPLES[list(STORM).index(name) % len(SAMPLES)]


@pytest.fixture(scope="module")
def engine(rel_model):
    with LocalEngine(ROOT, retry_scale=0.0) as eng:
        timeout_param = f"{TIMEOUT_STAGE.capitalize()}Timeout"
        # 1 child of 9 fails (store-always-throttled: not even its failure is recorded);
        # past a tolerance the Map fails and stops the children still running (as on AWS),
        # so the storm tolerates it to see every other image's outcome
        eng.deploy(rel_model, BatchSize=1, MapToleratedFailurePercentage=50,
                   **{timeout_param: 1})
        s3 = eng.client("s3")
        for name in STORM:
            s3.put_object(Bucket=INPUT, Key=key(name),
                          Body=(ROOT / "testdata/images" / source(name)).read_bytes())
        eng.model_path = rel_model
        yield eng


def storm_faults() -> list[Fault]:
    faults = [Fault(stage, kind, match=f"*/{key(name)}", times=times)
              for name, spec in STORM.items() if spec
              for stage, kind, times, _, _ in [spec]]
    faults += [Fault(stage, kind, times=times) for stage, kind, times, _, _ in BATCH_FAULTS]
    return faults


def expected(name: str) -> dict:
    """The outcome the ASL prescribes for one storm image."""
    spec = STORM[name]
    if spec is None:
        return {"status": "succeeded", "attempts": {}, "waits": []}
    stage, _, times, state, error = spec
    plan = retry_plan(state, error, times)
    out = {"attempts": {stage: plan["attempts"]}, "waits": plan["waits"]}
    if not plan["gives_up"]:
        out["status"] = "succeeded"
        return out
    assert plan["caught"], f"{state} does not catch {error}: the image would be lost"
    # the Catch path records the failure through the Store function (RecordBatchFailure)
    record_stage = "store"
    if stage == "store" and times is None:  # the fault keeps firing in RecordBatchFailure too
        rec = retry_plan("RecordBatchFailure", error, None)
        out["attempts"]["store"] = plan["attempts"] + rec["attempts"]
        out["waits"] = plan["waits"] + rec["waits"]
        out["status"] = "missing"
        out["recorded"] = rec["caught"]  # no Catch on RecordBatchFailure: nothing recorded
        return out
    out["attempts"][record_stage] = out["attempts"].get(record_stage, 0) + 1
    out.update(status="failed", stage=stage, error=error)
    return out


@pytest.fixture(scope="module")
def storm(engine):
    engine.router.faults = storm_faults()
    uris = [uri(n) for n in STORM]
    first = len(engine.router.attempts)
    run = engine.execute({"images": uris, "batch_id": "storm"}, timeout_s=600)
    engine.router.faults = []
    # the timed-out handler was still running when the state gave up (as on Lambda): its
    # attempt is logged when it ends, after the execution
    time.sleep(1.0)
    run = replace(run, attempts=engine.router.attempts[first:])
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    return run, assert_exactly_once(engine, run, uris)


def _attempts(run, stage: str, name: str | None) -> int:
    return sum(1 for a in run.attempts
               if a.stage == stage and (name is None or any(i.endswith(key(name))
                                                            for i in a.images)))


@pytest.mark.parametrize("name", list(STORM))
def test_storm_image(engine, storm, name) -> None:
    run, entries = storm
    want = expected(name)
    entry = entries[uri(name)]
    for stage, n in want["attempts"].items():
        assert _attempts(run, stage, name) == n, (
            f"{name}: {stage} invoked {_attempts(run, stage, name)} times, the ASL says {n}")
    if want["status"] == "succeeded":
        assert entry["status"] == "succeeded", entry["error"]
        result = engine.get_json(entry["result_uri"])
        data = (ROOT / "testdata/images" / source(name)).read_bytes()
        assert_same_detections(result["detections"],
                               expected_detections(engine.model_path, data)[1])
    elif want["status"] == "failed":
        assert_clear_error(entry, stage=want["stage"], error=want["error"])
    else:  # even recording the failure failed: the summary still lists the image
        assert entry["status"] == "failed"
        assert entry["error"]["type"] == "MissingResult", entry["error"]


def test_storm_batch_faults_retried(storm) -> None:
    run, _ = storm
    for stage, _, times, state, error in BATCH_FAULTS:
        plan = retry_plan(state, error, times)
        assert not plan["gives_up"]
        assert _attempts(run, stage, None) == plan["attempts"], stage


def test_storm_retry_waits_follow_the_asl(storm) -> None:
    """Every recorded backoff wait is one the ASL prescribes (IntervalSeconds x BackoffRate^n)."""
    run, _ = storm
    want = Counter()
    for name in STORM:
        if STORM[name]:
            want.update(expected(name)["waits"])
    for _, _, times, state, error in BATCH_FAULTS:
        want.update(retry_plan(state, error, times)["waits"])
    assert Counter(run.retry_waits) == want


def test_storm_loses_no_image(storm) -> None:
    run, entries = storm
    s = run.summary
    assert s["unique"] == len(STORM) == len(entries)
    assert s["succeeded"] == sum(expected(n)["status"] == "succeeded" for n in STORM)
    assert s["failed"] == len(STORM) - s["succeeded"]


def test_timeouts_are_not_retried_but_caught() -> None:
    """Guard for the storm's timeout case: the ASL has Catch-all and no Retry for it."""
    state = find_state("Postprocess")
    assert retry_plan("Postprocess", "Sandbox.Timedout", 1)["attempts"] == 1
    assert retry_plan("Postprocess", "States.Timeout", 1)["attempts"] == 1
    assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"])


# --- reruns and redrives -------------------------------------------------------------------
def _one_per_image(engine, batch: str, n: int) -> None:
    items = table_items(engine, batch)
    assert len(items) == n and len({i["image_id"]["S"] for i in items}) == n
    keys = [k for k in result_keys(engine, batch) if not k.endswith("summary.json")]
    assert len(keys) == n == len(set(keys))


def test_rerun_heals_failures_and_keeps_one_result_per_image(engine, storm) -> None:
    uris = [uri(n) for n in STORM]
    for _ in range(2):  # a clean re-run, then the same again: idempotent
        run = engine.execute({"images": uris, "batch_id": "storm"}, timeout_s=600)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        entries = assert_exactly_once(engine, run, uris)
        assert all(e["status"] == "succeeded" for e in entries.values()), [
            e["error"] for e in entries.values() if e["error"]]
        _one_per_image(engine, "storm", len(STORM))


def test_failed_execution_rerun_leaves_one_result_per_image(engine) -> None:
    """Summarize has Retry but no Catch: a Summarize that keeps crashing fails the execution
    after every image was stored. Re-running the same batch_id must not duplicate anything."""
    names = ["clean", "crash-once", "transient-then-ok"]
    uris = [uri(n) for n in names]
    engine.router.faults = [Fault("summarize", "crash", times=None)]
    try:
        failed = engine.execute({"images": uris, "batch_id": "redrive"}, timeout_s=600)
    finally:
        engine.router.faults = []
    assert failed.status == "FAILED" and failed.error == "RuntimeError", failed.error
    assert find_state("Summarize").get("Catch") is None
    _one_per_image(engine, "redrive", len(names))  # the Map had finished
    # its Summarize never freed the batch id: the re-run takes it over from the failed holder
    (held,) = [i for i in table_items(engine, "redrive", lock=True) if i not in
               table_items(engine, "redrive")]
    assert held["execution_arn"]["S"] == failed.execution_arn
    run = engine.execute({"images": uris, "batch_id": "redrive"}, timeout_s=600)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert_exactly_once(engine, run, uris)
    _one_per_image(engine, "redrive", len(names))
    assert len(table_items(engine, "redrive", lock=True)) == len(names)  # freed again


def test_rerun_does_not_report_a_previous_executions_result(engine) -> None:
    """F7 (fixed): records used to carry no execution id."""
    uris = [uri("clean")]
    first = engine.execute({"images": uris, "batch_id": "stale"}, timeout_s=300)
    assert first.summary["succeeded"] == 1
    engine.router.faults = [Fault("store", "throttle", match=f"*/{key('clean')}", times=None)]
    try:
        second = engine.execute({"images": uris, "batch_id": "stale"}, timeout_s=300)
    finally:
        engine.router.faults = []
    assert _attempts(second, "store", "clean") > 1, "the fault did not fire"
    # its only child failed (not even the failure was recorded): past the tolerance, the
    # execution fails after Summarize wrote the summary
    assert second.status == "FAILED" and second.error == "DetectImagesFailed", second.error
    summary = engine.get_json(f"s3://{engine.stack.bucket}/results/stale/summary.json")
    assert summary["execution_arn"] == second.execution_arn
    (entry,) = summary["images"]
    assert entry["status"] == "failed", (
        "this execution stored nothing for the image, yet the summary reports "
        f"{entry['status']} from the earlier execution: {entry}")
