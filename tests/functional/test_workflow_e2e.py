"""The whole state machine (template.yaml + statemachine/detect.asl.json + functions/*) on the
embedded local engine with the real demo model, compared with ``Detector.detect``.

Input: every testdata image + a corrupt JPEG + a non-image + a key that does not exist, in
ItemBatcher batches of 3 (8 images: the size does not divide the count). (Reruns keeping one
result per image: tests/reliability/test_faults.py.) Extra executions inject a transient S3 error
(the template's Retry on the real stages), a crashing stage (its batch's pending images are
recorded as failed at that stage, the execution goes on) and a Store that cannot even record
(children fail beyond the tolerance: the execution fails, after writing the summary).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.engine import INPUT_BUCKET, LocalEngine
from yolo_sfn.local.invoke import Fault

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "testdata" / "images"
GOOD = sorted(p.name for p in IMAGES.iterdir())
BAD = {"corrupt.jpg": "ImageDecodeError", "notes.txt": "ImageDecodeError",
       "missing.jpg": "ObjectNotFoundError"}
BATCH = "e2e"
BATCH_SIZE = 3
N = len(GOOD) + len(BAD)
CHILDREN = -(-N // BATCH_SIZE)


@pytest.fixture(scope="module")
def model(request):
    if not (REPO / "template.yaml").is_file():
        pytest.skip("template.yaml not written yet")
    try:
        return request.getfixturevalue("demo_model")
    except pytest.FixtureLookupError:
        pytest.skip("no demo_model fixture (tests/conftest.py)")


@pytest.fixture(scope="module")
def e2e(model):
    with LocalEngine(REPO, retry_scale=0.0) as eng:
        eng.deploy(model, MapConcurrency=4, BatchSize=BATCH_SIZE)
        uris, _ = eng.upload_inputs([IMAGES])
        s3 = eng.client("s3")
        data = (IMAGES / GOOD[0]).read_bytes()
        s3.put_object(Bucket=INPUT_BUCKET, Key="corrupt.jpg", Body=data[: len(data) // 3])
        s3.put_object(Bucket=INPUT_BUCKET, Key="notes.txt", Body=b"not an image\n")
        inp = {"images": [*uris, *(f"s3://{INPUT_BUCKET}/{k}" for k in BAD)], "batch_id": BATCH}
        yield eng, eng.execute(inp, name="e2e-1", timeout_s=600)


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def test_execution_succeeds_and_summary_accounts_for_every_image(e2e):
    _, run = e2e
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    s = run.summary
    assert s["batch_id"] == BATCH and s["execution_arn"] == run.execution_arn
    assert (s["submitted"], s["unique"]) == (len(GOOD) + len(BAD), len(GOOD) + len(BAD))
    assert (s["succeeded"], s["failed"]) == (len(GOOD), len(BAD))
    by_name = {_name(i["uri"]): i for i in s["images"]}
    assert sorted(by_name) == sorted([*GOOD, *BAD])
    for name in GOOD:
        assert by_name[name]["status"] == "succeeded" and by_name[name]["error"] is None
    for name, etype in BAD.items():
        err = by_name[name]["error"]
        assert by_name[name]["status"] == "failed"
        assert (err["stage"], err["type"]) == ("preprocess", etype), err


def test_results_match_detector_exactly(e2e, model):
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import load_image_file

    eng, first = e2e
    detector = Detector(model)
    items = {i["image_id"]["S"]: i for i in _table(eng)}
    for img in first.summary["images"]:
        if img["status"] != "succeeded":
            continue
        result = eng.get_json(img["result_uri"])
        rgb = load_image_file(IMAGES / _name(img["uri"]))
        expected = [d.to_dict() for d in detector.detect(rgb)]
        assert result["detections"] == expected, _name(img["uri"])
        assert result["status"] == "succeeded" and result["error"] is None
        assert set(result["timings_ms"]) >= {"preprocess", "infer", "postprocess", "store"}
        assert 1 <= result["child"]["size"] <= BATCH_SIZE and result["child"]["id"]
        assert list(result["spans_ms"]) == ["preprocess", "infer", "postprocess", "store"]
        # the image's own interpreter call, not the batch's Infer (model load, other images)
        assert result["timings_ms"]["infer"] <= result["batch_stage_ms"]["infer"]
        item = items[img["image_id"]]
        assert int(item["num_detections"]["N"]) == len(expected) == img["num_detections"]
        assert item["status"]["S"] == "succeeded"
        assert item["result_uri"]["S"] == img["result_uri"]


def _table(eng):
    return eng.client("dynamodb").query(
        TableName=eng.stack.table, KeyConditionExpression="batch_id = :b",
        ExpressionAttributeValues={":b": {"S": BATCH}}, ConsistentRead=True)["Items"]


def test_each_stage_invoked_once_per_batch_without_faults(e2e):
    eng, first = e2e
    for stage in ("preprocess", "infer", "postprocess", "store"):
        tries = [a for a in first.attempts if a.stage == stage]
        assert len(tries) == CHILDREN and all(a.outcome == "ok" for a in tries), stage
    assert first.retry_waits == []
    sizes = {}
    for img in first.summary["images"]:
        child = eng.get_json(img["result_uri"])["child"]
        sizes.setdefault(child["id"], []).append(child["size"])
    assert sorted(len(v) for v in sizes.values()) == sorted(
        [BATCH_SIZE] * (N // BATCH_SIZE) + ([N % BATCH_SIZE] if N % BATCH_SIZE else []))
    assert all(len(set(v)) == 1 and v[0] == len(v) for v in sizes.values())


def test_local_engine_notes_name_the_unfaithful_features(e2e):
    _, first = e2e
    text = "\n".join(first.notes)
    assert "DISTRIBUTED Map" in text and "EXPRESS" in text


def test_transient_s3_error_retried_on_real_stages(e2e):
    eng, _ = e2e
    eng.router.faults = [Fault("infer", "s3_transient", times=1)]
    try:
        run = eng.execute({"images": [f"s3://{INPUT_BUCKET}/{GOOD[0]}"], "batch_id": "e2e-retry"},
                          name="e2e-retry", timeout_s=300)
    finally:
        eng.router.faults = []
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    tries = [a for a in run.attempts if a.stage == "infer"]
    assert [(a.attempt, a.outcome, a.error_type) for a in tries] == [
        (1, "error", "TransientAwsError"), (2, "ok", None)]
    assert len(run.retry_waits) == 1
    assert run.summary["succeeded"] == 1


def test_a_crashing_stage_records_its_batch_and_the_execution_goes_on(e2e):
    """``--fault infer:crash:<glob>``: the batch carrying the matching image fails at Infer
    (not retried: a crash is no service error); its pending images are recorded as failed
    at infer, every other batch succeeds, and the summary lists each image once."""
    eng, _ = e2e
    target = GOOD[0]
    eng.router.faults = [Fault("infer", "crash", match=target, times=None)]
    uris = [f"s3://{INPUT_BUCKET}/{n}" for n in GOOD]
    try:
        run = eng.execute({"images": uris, "batch_id": "e2e-crash"}, name="e2e-crash",
                          timeout_s=300)
    finally:
        eng.router.faults = []
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    s = run.summary
    assert sorted(_name(i["uri"]) for i in s["images"]) == sorted(GOOD)  # each once
    failed = {_name(i["uri"]): i for i in s["images"] if i["status"] == "failed"}
    crashed = [a for a in run.attempts if a.stage == "infer" and a.outcome == "error"]
    assert len(crashed) == 1 and target in {_name(i) for i in crashed[0].images}
    assert sorted(failed) == sorted(_name(i) for i in crashed[0].images)  # its whole batch
    assert s["succeeded"] == len(GOOD) - len(failed)
    for img in failed.values():
        assert (img["error"]["stage"], img["error"]["type"]) == ("infer", "RuntimeError")


def test_children_failing_beyond_the_tolerance_fail_the_execution(e2e):
    """Store and RecordBatchFailure both crash: every child fails, past the 10 % tolerance,
    so the Map fails; Summarize still writes the summary, then DetectImagesFailed."""
    eng, _ = e2e
    eng.router.faults = [Fault("store", "crash", times=None)]
    try:
        run = eng.execute({"images": [f"s3://{INPUT_BUCKET}/{n}" for n in GOOD],
                           "batch_id": "e2e-lost"}, name="e2e-lost", timeout_s=300)
    finally:
        eng.router.faults = []
    assert run.status == "FAILED" and run.error == "DetectImagesFailed", (run.error, run.cause)
    summary = eng.get_json(f"s3://{eng.stack.bucket}/results/e2e-lost/summary.json")
    assert summary["failed"] == len(GOOD)
    assert {i["error"]["type"] for i in summary["images"]} == {"MissingResult"}
