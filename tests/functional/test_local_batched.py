"""The local engine on the toy project in batch mode (ItemBatcher, EXPRESS children, a batch
per stage invoke, per-image errors travelling with their item): what the real workflow runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import deployed_engine, write_toy_project

from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault

REPO = Path(__file__).resolve().parents[2]
BATCH = 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    toy = write_toy_project(tmp_path_factory.mktemp("batched"), batch_size=BATCH)
    with deployed_engine(toy) as eng:
        yield eng


def _run(engine, uris, faults=(), batch_id="b"):
    engine.router.faults = list(faults)
    run = engine.execute({"images": uris, "batch_id": batch_id}, timeout_s=60)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    return run


def test_every_image_once_and_a_missing_one_fails_alone(engine):
    missing = f"s3://{engine.input_bucket}/nope.jpg"
    uris = [*engine.test_uris, missing]
    run = _run(engine, uris, batch_id="missing")
    by_uri = {i["uri"]: i for i in run.summary["images"]}
    assert sorted(by_uri) == sorted(uris)
    assert by_uri[missing]["error"]["type"] == "ObjectNotFoundError"
    assert by_uri[missing]["error"]["stage"] == "preprocess"
    assert run.summary["succeeded"] == len(engine.test_uris)
    # stage invokes carry batches: 4 per batch, not per image
    batches = math.ceil(len(uris) / BATCH)
    assert len([a for a in run.attempts if a.stage == "infer"]) == batches
    assert all(len(a.images) <= BATCH for a in run.attempts if a.stage == "infer")


def test_a_stage_failing_as_a_whole_fails_its_batch_only(engine):
    run = _run(engine, engine.test_uris, [Fault("postprocess", "crash", match="horses.jpg",
                                                times=None)], batch_id="crash")
    (attempt,) = [a for a in run.attempts if a.injected]
    failed = [i for i in run.summary["images"] if i["status"] == "failed"]
    assert sorted(i["uri"] for i in failed) == sorted(attempt.images)
    assert all(i["error"]["stage"] == "postprocess" for i in failed)
    assert all(i["error"]["type"] == "RuntimeError" for i in failed)
    assert run.summary["succeeded"] == len(engine.test_uris) - len(attempt.images)


def test_batched_counts(engine):
    n = len(engine.test_uris)
    run = _run(engine, engine.test_uris, batch_id="counted")
    batches = math.ceil(n / BATCH)
    c = run.counts
    assert c["images"] == n
    assert c["lambda_invocations"] == 2 + 4 * batches
    assert c["sfn_express_requests"] == batches and c["sfn_express_gb_s"] > 0
    # parent: Plan, DetectImages, Summarize; one per child started; EXPRESS children are
    # billed per request and duration, not per transition
    assert c["sfn_standard_transitions"] == 3 + batches
    assert c["s3_head"] == n and c["s3_put"] == n + 3 and c["s3_get"] == 3
    assert c["dynamodb_write_units"] == n
    assert c["requests"]["dynamodb.BatchWriteItem"] == batches
    assert run.cost["usd"]["step_functions"] < run.cost["usd"]["total"]


def test_progress_counts_failed_images_of_a_failed_batch(engine):
    seen = []
    engine.router.faults = [Fault("infer", "crash", match="dog.jpg", times=None)]
    run = engine.execute({"images": engine.test_uris, "batch_id": "prog"},
                         on_progress=seen.append, poll_s=0.01, timeout_s=60)
    assert run.succeeded
    assert seen[-1].total == len(engine.test_uris) == seen[-1].done
    assert seen[-1].failed == run.summary["failed"] >= 1


SLOW_INFER = '''
import time


def handler(event, context):
    time.sleep(1.5)  # one "inference" per batch: the fifth batch queues for 6 s
    for item in event["items"]:
        if not item.get("error"):
            item["timings_ms"] = {**item["timings_ms"], "infer": 1500.0}
    return event
'''


def test_waiting_for_the_shared_model_is_not_task_time(tmp_path):
    """Locally the Infer invokes of concurrent batches take turns on one loaded model (on AWS
    each has its own container): a batch's wait for its turn must not run into the Infer
    Task's TimeoutSeconds (4 s here; the fifth batch waits 6 s)."""
    toy = write_toy_project(tmp_path / "toy", batch_size=1, infer_timeout_s=4)
    (toy / "functions" / "infer" / "app.py").write_text(SLOW_INFER)
    with LocalEngine(toy, retry_scale=0.0, stack_name="yolo-sfn-queued") as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images"])
        run = eng.execute({"images": uris, "batch_id": "queued"}, timeout_s=120)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert len(uris) == 5 and run.summary["succeeded"] == 5, \
        [i["error"] for i in run.summary["images"]]
    infers = [a for a in run.attempts if a.stage == "infer"]
    assert len(infers) == 5 and all(a.outcome == "ok" for a in infers)
