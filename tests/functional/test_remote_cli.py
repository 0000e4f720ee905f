"""submit / status / results / describe / list against a stack deployed into moto by the
local engine's deploy code (the toy project: same logical ids, outputs and record shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import write_toy_project

from yolo_sfn.cli import main
from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault
from yolo_sfn.remote import api

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.name for p in (REPO / "testdata" / "images").iterdir())
STACK = "yolo-sfn-remote-test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    toy = write_toy_project(tmp_path_factory.mktemp("toy"))
    with LocalEngine(toy, retry_scale=0.0, stack_name=STACK) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images"])
        eng.test_uris = uris
        yield eng


def _cli(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_submit_wait_status_results(stack, capsys):
    stack.router.faults = [Fault("postprocess", "crash", match="kite.jpg", times=None)]
    out = _cli(capsys, "submit", "--stack", STACK, *stack.test_uris,
                   "s3://yolo-sfn-input/absent.jpg", "--batch-id", "r1", "--name", "r1-exec",
                   "--wait", "--json")
    sub = json.loads(out)
    assert sub["status"] == "SUCCEEDED" and sub["manifest_written"] is None
    assert sub["input"] == {"images": [*stack.test_uris, "s3://yolo-sfn-input/absent.jpg"],
                            "batch_id": "r1"}

    for ref in (["r1-exec", "--stack", STACK], [sub["execution_arn"]]):  # name or bare ARN
        out = _cli(capsys, "status", *ref, "--json")
        st = json.loads(out)
        assert st["status"] == "SUCCEEDED" and st["batch_id"] == "r1"
        n = len(IMAGES)
        assert st["items"]["total"] == n + 1
        assert (st["items"]["succeeded"], st["items"]["failed"]) == (n - 1, 2)
        assert st["stages"]["preprocess"] == {"passed": n, "failed": 1}
        assert st["stages"]["infer"] == {"passed": n, "failed": 0}
        assert st["stages"]["postprocess"] == {"passed": n - 1, "failed": 1}
        assert st["stages"]["store"] == {"passed": n - 1, "failed": 0}

    out = _cli(capsys, "status", "r1-exec", "--stack", STACK)
    assert "postprocess" in out and "SUCCEEDED" in out

    out = _cli(capsys, "results", "r1-exec", "--stack", STACK, "--json")
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
    assert rows["dog.jpg"]["status"] == "succeeded"
    assert rows["dog.jpg"]["result"]["detections"][0]["label"] == "jpg"
    assert rows["kite.jpg"]["state"] == "not reached"
    out = _cli(capsys, "results", "r1-exec", "--stack", STACK, "--stage", "postprocess",
                   "--json")
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
    assert rows["kite.jpg"]["state"] == "failed"
    assert rows["kite.jpg"]["error"]["type"] == "RuntimeError"
    assert rows["dog.jpg"]["state"] == "passed" and rows["dog.jpg"]["ms"] == 1.0
    assert rows["absent.jpg"]["state"] == "not reached"
    out = _cli(capsys, "results", "r1-exec", "--stack", STACK, "--stage", "preprocess")
    assert "ObjectNotFoundError" in out


def test_describe_and_list(stack, capsys):
    stack.router.faults = []
    arn = api.submit(STACK, stack.test_uris[:2], batch_id="r2", name="r2-exec")["execution_arn"]
    api.wait(arn, poll_s=0.1, timeout_s=30)
    out = _cli(capsys, "describe", "r2-exec", "--stack", STACK)
    d = json.loads(out)
    assert d["status"] == "SUCCEEDED" and d["input"]["batch_id"] == "r2"
    assert d["output"]["succeeded"] == 2 and d["artifacts_bucket"] == stack.stack.bucket
    out = _cli(capsys, "list", "--stack", STACK, "--json")
    names = {r["name"] for r in json.loads(out)}
    assert "r2-exec" in names
    out = _cli(capsys, "list", "--stack", STACK, "--status", "FAILED", "--json")
    assert json.loads(out) == []
    out = _cli(capsys, "list", "--json")  # no --stack: every *-detect state machine
    assert "r2-exec" in {r["name"] for r in json.loads(out)}


def test_large_input_goes_via_manifest(stack):
    stack.router.faults = []
    many = [stack.test_uris[0]] * 7000  # > 200 KiB serialized; Plan de-duplicates to 1
    inp = api.build_input(many, batch_id="big")
    assert len(json.dumps(inp)) > api.MAX_INLINE_INPUT
    sub = api.submit(STACK, many, batch_id="big", name="big-exec")
    assert sub["manifest_written"].startswith(f"s3://{stack.stack.bucket}/manifests/")
    assert set(sub["input"]) == {"manifest", "batch_id"}
    body = stack.client("s3").get_object(
        Bucket=stack.stack.bucket, Key=sub["manifest_written"].split("/", 3)[3])["Body"].read()
    assert json.loads(body) == many
    desc = stack.client("stepfunctions").describe_execution(executionArn=sub["execution_arn"])
    assert json.loads(desc["input"])["manifest"] == sub["manifest_written"]
    done = api.wait(sub["execution_arn"], poll_s=0.1, timeout_s=60)
    out = json.loads(done["output"])
    assert done["status"] == "SUCCEEDED" and (out["succeeded"], out["failed"]) == (1, 0)


def test_input_validation():
    with pytest.raises(api.InputValidationError):
        api.build_input([])
    with pytest.raises(api.InputValidationError):
        api.build_input(["s3://b/k.jpg"], manifest="s3://b/m.json")
    assert api.build_input(["s3://b/p/"]) == {"prefix": "s3://b/p/"}
    with pytest.raises(api.S3UriError):
        api.build_input(["s3://b/p/", "s3://b/k.jpg"])
    with pytest.raises(api.InputValidationError, match="--stack"):
        api.execution_arn("just-a-name", None)


def test_clients_follow_the_standard_endpoint_chain(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    c = api.client("stepfunctions")
    assert c.meta.endpoint_url == "http://127.0.0.1:5999" and c.meta.region_name == "eu-west-1"
