"""The embedded local engine's machinery, on a toy project with the workflow contract's shape.

The toy (``tests/fixtures/toy``, via ``fixtures.toystack``) has the real logical ids, env var
names, a DISTRIBUTED Map with Retry/Catch per stage and the summary schema, but no model, so
these tests check the runner (template read, deploy, invoke routing, faults, attempt log)
independently of the real stages. One stack is deployed per module; each test runs its own
execution.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import deployed_engine, write_toy_project

from yolo_sfn.local import features, motohooks
from yolo_sfn.local.deploy import sub_as_join
from yolo_sfn.local.invoke import Fault, batch_of, image_of, images_of, split_environment
from yolo_sfn.local.template import load_cfn_yaml, read_template

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(p.name for p in (REPO / "testdata" / "images").iterdir())


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_project(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def engine(toy):
    with deployed_engine(toy) as eng:
        yield eng


def _run(engine, faults=(), extra=(), batch_id=None):
    engine.router.faults = list(faults)
    inp = {"images": [*engine.test_uris, *extra]}
    if batch_id:
        inp["batch_id"] = batch_id
    run = engine.execute(inp, timeout_s=60)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    return run


def _not_ok(run) -> list:
    """What went wrong, for assertion messages: failed images and non-ok attempts."""
    failed = [(i["uri"], i.get("error")) for i in run.summary["images"]
              if i["status"] != "succeeded"]
    return [*failed, *(a for a in run.attempts if a.outcome != "ok")]


def _image(run, name):
    (img,) = [i for i in run.summary["images"] if i["uri"].endswith("/" + name)]
    return img


# --- template + ASL ------------------------------------------------------------------------
def test_template_reader_understands_short_tags(toy):
    doc = load_cfn_yaml(toy / "template.yaml")
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert env["RESULTS_BUCKET"] == {"Ref": "ArtifactsBucket"}
    subs = doc["Resources"]["DetectStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert subs["PlanFunctionArn"] == {"Fn::GetAtt": ["PlanFunction", "Arn"]}
    tpl = read_template(toy / "template.yaml")
    assert set(tpl.functions) == {"plan", "preprocess", "infer", "postprocess", "store",
                                  "summarize"}
    assert tpl.functions["infer"].environment["STAGE_NAME"] == "infer"
    assert tpl.functions["infer"].code_dir == (toy / "functions" / "infer").resolve()
    assert tpl.asl["StartAt"] == "Plan"


def test_feature_scan_names_what_moto_cannot_run():
    asl = {"StartAt": "M", "QueryLanguage": "JSONata", "States": {"M": {
        "Type": "Map", "ItemBatcher": {"MaxItemsPerBatch": 10}, "ResultWriter": {},
        "ToleratedFailurePercentage": 5, "End": True,
        "ItemReader": {"ReaderConfig": {"InputType": "JSONL"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                          "StartAt": "T", "States": {"T": {
                              "Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                              "End": True}}}}}}
    text = "\n".join(features.scan(asl))
    for needle in ("ResultWriter", "EXPRESS children run like STANDARD", "JSONata", "JSONL",
                   "startExecution", "no execution history"):
        assert needle in text
    for fixed in ("has no effect", "not parsed", "is rejected", "does NOT fail"):
        assert fixed not in text


def test_definition_substitution_keeps_context_paths():
    text = '{"a.$": "$$.Map.Item.Value", "f": "${Fn}", "lit": "${!Keep}", "r": "${AWS::Region}"}'
    joined = sub_as_join(text, {"Fn": {"Fn::GetAtt": ["F", "Arn"]}})
    parts = joined["Fn::Join"][1]
    assert parts[0] == '{"a.$": "$$.Map.Item.Value", "f": "'
    assert {"Fn::GetAtt": ["F", "Arn"]} in parts and {"Ref": "AWS::Region"} in parts
    assert any("${Keep}" in p for p in parts if isinstance(p, str))


def test_event_image_and_environment_split():
    assert image_of({"batch_id": "b", "uri": "s3://b/x.jpg"}) == "s3://b/x.jpg"
    assert image_of({"Payload": {"bucket": "b", "key": "k.png"}}) == "k.png"
    assert image_of({"batch_id": "b"}) is None
    envelope = {"BatchInput": {"batch_id": "b1"},
                "Items": [{"image_id": "1", "uri": "s3://b/x.jpg"}, {"uri": "s3://b/y.jpg"}]}
    assert images_of(envelope) == ["s3://b/x.jpg", "s3://b/y.jpg"]
    assert images_of({"batch_id": "b2", "items": [{"uri": "s3://b/z.jpg"}]}) == ["s3://b/z.jpg"]
    assert batch_of(envelope) == "b1" and batch_of({"batch_id": "b2"}) == "b2"
    assert Fault("infer", "crash", match="y.jpg").applies("infer", images_of(envelope))
    assert not Fault("infer", "crash", match="q.jpg").applies("infer", images_of(envelope))
    common, per_fn = split_environment({"f1": {"A": "1", "S": "x"}, "f2": {"A": "1", "S": "y"}})
    assert common == {"A": "1"} and per_fn == {"f1": {"S": "x"}, "f2": {"S": "y"}}


def test_pin_check_fails_loudly_on_other_moto(monkeypatch):
    import moto

    motohooks.check_moto()
    monkeypatch.setattr(moto, "__version__", "5.9.0")
    with pytest.raises(motohooks.LocalEngineError, match=r"pinned to moto==5\.2\.5"):
        motohooks.check_moto()


def test_pin_check_fails_loudly_when_a_patched_internal_moved(monkeypatch):
    from moto.awslambda import models

    monkeypatch.delattr(models.LambdaFunction, "_invoke_lambda")
    with pytest.raises(motohooks.LocalEngineError, match="_invoke_lambda"):
        motohooks.check_moto()


@pytest.mark.parametrize(("module", "cls", "attr", "needle"), [
    ("moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration."
     "distributed_iteration_component", "DistributedIterationComponent", "_map_run", "_map_run"),
    ("moto.stepfunctions.parser.asl.parse.asl_parser", "AmazonStateLanguageParser", "parse",
     "staticmethod"),
    ("moto.core.botocore_stubber", "BotocoreStubber", "__call__", "BotocoreStubber"),
])
def test_pin_check_covers_the_map_and_meter_hooks(monkeypatch, module, cls, attr, needle):
    import importlib

    target = getattr(importlib.import_module(module), cls)
    monkeypatch.setattr(target, attr, lambda self: None)  # a changed signature
    with pytest.raises(motohooks.LocalEngineError, match=needle):
        motohooks.check_moto()


# --- deploy ----------------------------------------------------------------------------------
def test_deploy_creates_everything_from_the_template(engine):
    stack = engine.stack
    assert set(stack.functions) == {"plan", "preprocess", "infer", "postprocess", "store",
                                    "summarize"}
    assert stack.outputs["StateMachineArn"] == stack.state_machine_arn
    lam = engine.client("lambda")
    cfg = lam.get_function_configuration(FunctionName=stack.functions["store"])
    env = cfg["Environment"]["Variables"]
    assert env["RESULTS_BUCKET"] == stack.bucket and env["RESULTS_TABLE"] == stack.table
    assert env["INPUT_BUCKETS"] == "yolo-sfn-input" and env["STAGE_NAME"] == "store"
    assert cfg["Timeout"] == 30 and cfg["MemorySize"] == 256
    sm = engine.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.state_machine_arn)
    definition = json.loads(sm["definition"])
    selector = definition["States"]["DetectImages"]["ItemSelector"]
    assert selector["uri.$"] == "$$.Map.Item.Value.uri"
    fn = definition["States"]["Plan"]["Parameters"]["FunctionName"]
    assert fn.endswith(":function:" + stack.functions["plan"])


def test_engine_notes_include_feature_scan_and_env(engine):
    assert any("DISTRIBUTED Map" in n for n in engine.notes)
    assert any("STAGE_NAME" in n for n in engine.notes)


# --- executions ------------------------------------------------------------------------------
def _name(attempt) -> str:
    """The file name of the image an attempt was about (its event carries the ``uri``)."""
    return attempt.image.rsplit("/", 1)[-1]


def test_clean_run_accounts_for_every_image(engine):
    run = _run(engine)
    s = run.summary
    assert s["unique"] == len(IMAGES) == s["succeeded"] and s["failed"] == 0, _not_ok(run)
    for stage in ("preprocess", "infer", "postprocess", "store"):
        hits = [a for a in run.attempts if a.stage == stage]
        assert sorted(_name(a) for a in hits) == IMAGES
        assert all(a.outcome == "ok" and a.attempt == 1 for a in hits), _not_ok(run)
    assert [a.stage for a in run.attempts if a.image is None] == ["plan", "summarize"]
    assert run.retry_waits == [], _not_ok(run)


def test_transient_s3_error_is_retried(engine):
    run = _run(engine, [Fault("infer", "s3_transient", match="dog.jpg")], batch_id="transient")
    tries = [a for a in run.attempts if a.stage == "infer" and _name(a) == "dog.jpg"]
    assert [(a.attempt, a.outcome, a.error_type) for a in tries] == [
        (1, "error", "TransientAwsError"), (2, "ok", None)]
    assert tries[0].injected == "s3_transient"
    assert _image(run, "dog.jpg")["status"] == "succeeded"
    assert run.retry_waits == [1.0], _not_ok(run)  # IntervalSeconds of the template's Retry
    assert run.summary["succeeded"] == len(IMAGES), _not_ok(run)


def test_throttling_is_retried(engine):
    run = _run(engine, [Fault("preprocess", "throttle", match="kite.jpg", times=2)])
    tries = [a for a in run.attempts if a.stage == "preprocess" and _name(a) == "kite.jpg"]
    assert [a.outcome for a in tries] == ["throttled", "throttled", "ok"], _not_ok(run)
    assert tries[0].error_type == "Lambda.TooManyRequestsException"
    assert run.retry_waits == [1.0, 2.0], _not_ok(run)  # BackoffRate 2
    assert _image(run, "kite.jpg")["status"] == "succeeded", _not_ok(run)


def test_crash_is_recorded_as_a_failure_with_stage_and_type(engine):
    run = _run(engine, [Fault("postprocess", "crash", match="horses.jpg", times=None)],
               batch_id="crash")
    img = _image(run, "horses.jpg")
    assert img["status"] == "failed"
    assert img["error"]["stage"] == "postprocess" and img["error"]["type"] == "RuntimeError"
    assert "injected crash" in img["error"]["message"]
    tries = [a for a in run.attempts if a.stage == "postprocess" and _name(a) == "horses.jpg"]
    assert len(tries) == 1  # RuntimeError is not in the Retry list
    s = run.summary
    assert (s["succeeded"], s["failed"], s["unique"]) == (len(IMAGES) - 1, 1, len(IMAGES))
    assert len(s["images"]) == len(IMAGES)


def test_missing_object_and_duplicates_are_accounted(engine):
    run = _run(engine, extra=["s3://yolo-sfn-input/nope.jpg", engine.test_uris[0]],
               batch_id="missing")
    s = run.summary
    assert s["submitted"] == len(IMAGES) + 2 and s["unique"] == len(IMAGES) + 1
    assert s["duplicates"] == [engine.test_uris[0]]
    img = _image(run, "nope.jpg")
    assert img["status"] == "failed" and img["error"]["stage"] == "preprocess"
    assert img["error"]["type"] == "ObjectNotFoundError"


def test_real_template_reads_and_scans():
    """The project's own template + ASL (bare ${Number} substitutions included)."""
    if not (REPO / "template.yaml").is_file():
        pytest.skip("template.yaml not written yet")
    tpl = read_template(REPO / "template.yaml")
    assert set(tpl.functions) == {"plan", "preprocess", "infer", "postprocess", "store",
                                  "summarize"}
    for spec in tpl.functions.values():
        assert (spec.code_dir / "app.py").is_file() and spec.handler == "app.handler"
    assert tpl.asl["StartAt"] and "${" in tpl.asl_text
    assert any("DISTRIBUTED Map" in n for n in features.scan(tpl.asl))


def test_handler_import_error_is_a_lambda_error(tmp_path):
    from yolo_sfn.local.invoke import LambdaRouter
    from yolo_sfn.local.template import FunctionSpec

    (tmp_path / "app.py").write_text("import no_such_module_xyz\n")
    spec = FunctionSpec("InferFunction", "infer", tmp_path, "app.handler", {}, 3, 128)
    router = LambdaRouter()
    router.bind("fn", spec)

    class Fn:
        function_name, memory_size, timeout, function_arn = "fn", 128, 3, "arn:fn"

    body, errored, _ = router.invoke(Fn(), {"uri": "s3://b/x.jpg"})
    assert errored and json.loads(body)["errorType"] == "Runtime.ImportModuleError"
    assert router.attempts[0].outcome == "error"


def test_billable_operations_are_counted_not_the_runners_own(engine):
    before = engine.meter.snapshot()
    engine.upload_inputs([REPO / "testdata" / "images"])  # the runner's upload: not billed
    assert engine.meter.snapshot() == before
    run = _run(engine, batch_id="counted")
    n = len(engine.test_uris)
    c = run.counts
    assert c["images"] == n
    assert c["lambda_invocations"] == 2 + 4 * n  # Plan, 4 stages per image, Summarize
    # parent: Plan, DetectImages, Summarize entered; one per child started; 4 Tasks per child
    assert c["sfn_standard_transitions"] == 3 + n + 4 * n
    assert c["sfn_express_requests"] == 0 and c["sfn_express_gb_s"] == 0
    assert c["s3_put"] == n + 3  # one result per image, items.json, plan.json, summary.json
    assert c["s3_get"] == 3  # the Map's ItemReader, Summarize's plan.json and items.json
    assert c["s3_head"] == n and c["s3_list"] == 0
    assert c["dynamodb_write_units"] == n  # one item under 1 KB per image
    assert c["lambda_gb_s"] > 0
    assert run.cost["images"] == n and run.cost["usd"]["total"] > 0
    assert run.cost["counts"]["lambda_invocations"] == c["lambda_invocations"]


def test_progress_total_is_known_once_the_map_starts_and_counts_items(engine):
    seen = []
    engine.router.faults = []
    run = engine.execute({"images": engine.test_uris, "batch_id": "progress"},
                         on_progress=seen.append, poll_s=0.01, timeout_s=60)
    assert run.succeeded
    n = len(engine.test_uris)
    assert {p.total for p in seen if p.total is not None} == {n}
    assert seen[-1].done == n and seen[-1].failed == 0
    started = [i for i, p in enumerate(seen) if p.total is not None]
    assert started == list(range(started[0], len(seen)))  # never None again once known


def test_a_failed_execution_still_finds_the_summary_it_wrote(engine):
    """An execution that fails after writing its summary (e.g. a tolerance check after
    Summarize) has no output: the summary is found through the state outputs in its history."""
    s3 = engine.client("s3")
    s3.put_object(Bucket=engine.stack.bucket, Key="results/late/summary.json",
                  Body=json.dumps({"batch_id": "late", "images": []}))
    uri = f"s3://{engine.stack.bucket}/results/late/summary.json"
    asl = {"StartAt": "Summarize", "States": {
        "Summarize": {"Type": "Pass", "Result": {"summary_uri": uri}, "Next": "TooManyFailed"},
        "TooManyFailed": {"Type": "Fail", "Error": "DetectImagesFailed", "Cause": "too many"}}}
    sfn = engine.client("stepfunctions")
    sm = sfn.create_state_machine(name="fails-late", definition=json.dumps(asl),
                                  roleArn="arn:aws:iam::123456789012:role/toy")
    real = engine.stack.state_machine_arn
    engine.stack.state_machine_arn = sm["stateMachineArn"]
    try:
        run = engine.execute({}, timeout_s=60)
    finally:
        engine.stack.state_machine_arn = real
    assert run.status == "FAILED" and run.error == "DetectImagesFailed"
    assert run.output is None
    assert run.summary == {"batch_id": "late", "images": []} and run.batch_id == "late"
