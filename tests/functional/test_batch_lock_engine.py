"""Two executions with one batch id, on the local engine with the real stack and demo model:
the second, started while the first runs, fails fast at Plan with ``BatchInUseError`` naming
the first; the first is untouched; a re-run once the first has finished works and frees the
batch id again. (Plan and Summarize's lock on moto alone: test_batch_lock.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault
from yolo_sfn.workflow import batchlock

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "testdata" / "images" / "girl.png"
BATCH = "shared-batch"


@pytest.fixture(scope="module")
def model(request):
    try:
        return request.getfixturevalue("demo_model")
    except pytest.FixtureLookupError:
        pytest.skip("no demo_model fixture (tests/conftest.py)")


def lock_holder(eng) -> str | None:
    item = eng.client("dynamodb").get_item(
        TableName=eng.stack.table, ConsistentRead=True,
        Key={"batch_id": {"S": BATCH}, "image_id": {"S": batchlock.LOCK_ID}}).get("Item")
    return item["execution_arn"]["S"] if item else None


def test_a_second_execution_of_a_running_batch_fails_fast_and_a_later_rerun_works(model):
    # retry waits as on AWS: the first execution's Preprocess is throttled three times (1 + 2
    # + 4 s of Retry waits), so it is still running when the second one plans
    with LocalEngine(REPO, retry_scale=1.0) as eng:
        eng.deploy(model, MapConcurrency=2, BatchSize=2)
        uris, _ = eng.upload_inputs([IMAGE])
        inp = {"images": uris, "batch_id": BATCH}
        eng.router.faults = [Fault("preprocess", "throttle", match=IMAGE.name, times=3)]
        first = eng.start(inp, name="first")
        for _ in range(600):  # until the first's Plan holds the batch id
            if lock_holder(eng) == first:
                break
            time.sleep(0.1)
        assert lock_holder(eng) == first

        second = eng.wait(eng.start(inp, name="second"), timeout_s=300)
        assert second["status"] == "FAILED"
        assert second["error"] == "BatchInUseError"
        assert f"batch '{BATCH}' is being processed by execution {first}" in second["cause"]

        done = eng.wait(first, timeout_s=300)
        assert done["status"] == "SUCCEEDED", done.get("cause")
        assert lock_holder(eng) is None  # Summarize freed it
        assert [a.outcome for a in eng.router.attempts_for("preprocess")] == [
            "throttled", "throttled", "throttled", "ok"]

        rerun = eng.execute(inp, name="third", timeout_s=300)
        assert rerun.status == "SUCCEEDED", (rerun.error, rerun.cause)
        (img,) = rerun.summary["images"]
        assert img["status"] == "succeeded" and rerun.summary["execution_arn"].endswith(":third")
        assert lock_holder(eng) is None
