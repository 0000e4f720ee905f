"""status / results --stage against the real template deployed into moto by the local deploy
code, with the demo model: per-stage counts and per-stage outputs from what the stages persist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.cli import main
from yolo_sfn.local.engine import INPUT_BUCKET, LocalEngine

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "testdata" / "images"
STACK = "yolo-sfn-real-remote"


@pytest.fixture(scope="module")
def executed(request):
    if not (REPO / "template.yaml").is_file():
        pytest.skip("template.yaml not written yet")
    try:
        model = request.getfixturevalue("demo_model")
    except pytest.FixtureLookupError:
        pytest.skip("no demo_model fixture (tests/conftest.py)")
    with LocalEngine(REPO, retry_scale=0.0, stack_name=STACK) as eng:
        eng.deploy(model, MapConcurrency=2)
        uris, _ = eng.upload_inputs([IMAGES / "dog.jpg", IMAGES / "horses.jpg"])
        eng.client("s3").put_object(Bucket=INPUT_BUCKET, Key="bad.jpg", Body=b"\xff\xd8\xff")
        assert main(["submit", "--stack", STACK, *uris, f"s3://{INPUT_BUCKET}/bad.jpg",
                     "--batch-id", "real", "--name", "real-1", "--wait", "--json"]) == 0
        yield eng


def _json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_counts_per_stage(executed, capsys):
    capsys.readouterr()
    st = _json(capsys, "status", "real-1", "--stack", STACK)
    assert st["status"] == "SUCCEEDED" and st["batch_id"] == "real"
    assert (st["items"]["total"], st["items"]["succeeded"], st["items"]["failed"]) == (3, 2, 1)
    assert st["stages"]["preprocess"] == {"passed": 2, "failed": 1}
    for stage in ("infer", "postprocess", "store"):
        assert st["stages"][stage] == {"passed": 2, "failed": 0}


def test_results_per_stage(executed, capsys):
    capsys.readouterr()
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in
            _json(capsys, "results", "real-1", "--stack", STACK, "--stage", "preprocess")}
    assert rows["dog.jpg"]["input_shape"][0] == 1 and rows["dog.jpg"]["input_dtype"] == "uint8"
    # each image's part of its batch's one tensor file
    assert rows["dog.jpg"]["artifact"] == rows["horses.jpg"]["artifact"]
    assert rows["dog.jpg"]["artifact"].endswith("/inputs.npz")
    assert rows["bad.jpg"]["state"] == "failed"
    assert rows["bad.jpg"]["error"]["type"] == "ImageDecodeError"
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in
            _json(capsys, "results", "real-1", "--stack", STACK, "--stage", "infer")}
    assert len(rows["dog.jpg"]["heads"]) == 2 and rows["bad.jpg"]["state"] == "not reached"
    post = {r["uri"].rsplit("/", 1)[-1]: r for r in
            _json(capsys, "results", "real-1", "--stack", STACK, "--stage", "postprocess")}
    store = {r["uri"].rsplit("/", 1)[-1]: r for r in
             _json(capsys, "results", "real-1", "--stack", STACK)}
    for name in ("dog.jpg", "horses.jpg"):
        assert post[name]["detections"] == store[name]["result"]["detections"]
        assert store[name]["num_detections"] == len(post[name]["detections"]) > 0


def test_results_use_the_prefix_the_stack_was_deployed_with(executed, capsys):
    """The intermediates' prefix is the stack's configuration (INTERMEDIATE_PREFIX of its
    functions, template.yaml Globals), not a fixed ``tmp/``: redeployed with another, results
    look there."""
    lam = executed.client("lambda")
    before = {f["FunctionName"]: {k: str(v) for k, v in f["Environment"]["Variables"].items()}
              for f in lam.list_functions()["Functions"]  # moto keeps numbers as numbers
              if f["FunctionName"].startswith(f"{STACK}-")}
    assert before and {v["INTERMEDIATE_PREFIX"] for v in before.values()} == {"tmp/"}
    capsys.readouterr()
    try:
        for name, variables in before.items():
            lam.update_function_configuration(FunctionName=name, Environment={
                "Variables": {**variables, "INTERMEDIATE_PREFIX": "elsewhere"}})
        rows = _json(capsys, "results", "real-1", "--stack", STACK, "--stage", "preprocess")
    finally:
        for name, variables in before.items():
            lam.update_function_configuration(FunctionName=name,
                                               Environment={"Variables": variables})
    passed = [r for r in rows if r["state"] == "passed"]
    assert passed and all("/elsewhere/real/" in r["artifact"] and not r["artifact_present"]
                          for r in passed)


def test_status_of_an_older_execution_of_the_same_batch(executed, capsys):
    """A rerun overwrites the records; the first execution's status says so."""
    capsys.readouterr()
    uri = f"s3://{INPUT_BUCKET}/dog.jpg"
    assert main(["submit", "--stack", STACK, uri, "--batch-id", "real", "--name", "real-2",
                 "--wait", "--json"]) == 0
    capsys.readouterr()
    old = _json(capsys, "status", "real-1", "--stack", STACK)
    new = _json(capsys, "status", "real-2", "--stack", STACK)
    assert new["items"]["recorded"] == 1 and new["items"]["recorded_by_other_executions"] == 2
    assert old["items"]["recorded"] == 2 and old["items"]["recorded_by_other_executions"] == 1
