"""The local engine runs Distributed Map features as the AWS Step Functions developer guide
describes them (``yolo_sfn.local.aslext`` over moto 5.2.5).

One toy stack is deployed per module; each test creates a tiny state machine of its own (a
DISTRIBUTED Map over ``$.items`` whose child is one Lambda Task echoing its input, failing when
an item has ``"fail": true``) and runs it. Guide pages cited by their titles, from
https://docs.aws.amazon.com/step-functions/latest/dg/.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import write_toy_project

from yolo_sfn.local import aslext
from yolo_sfn.local.engine import LocalEngine

ECHO = '''
def handler(event, context):
    items = event["Items"] if isinstance(event, dict) and "Items" in event else [event]
    if any(isinstance(i, dict) and i.get("fail") for i in items):
        raise ValueError("toy failure")
    return event
'''


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = write_toy_project(tmp_path_factory.mktemp("conformance"))
    (root / "functions" / "infer" / "app.py").write_text(ECHO)
    with LocalEngine(root, retry_scale=0.0) as eng:
        eng.deploy()
        name = eng.stack.functions["infer"]
        eng.echo_arn = eng.client("lambda").get_function(FunctionName=name)[
            "Configuration"]["FunctionArn"]
        yield eng


def _asl(engine, execution_type="STANDARD", **map_fields) -> dict:
    return {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
            "StartAt": "Echo",
            "States": {"Echo": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": engine.echo_arn, "Payload.$": "$"},
                "OutputPath": "$.Payload", "End": True}}},
        **map_fields, "End": True}}}


def _run(engine, asl: dict, inp: dict) -> dict:
    """Create the state machine, run it; returns describe_execution + its map run."""
    sfn = engine.client("stepfunctions")
    sm = sfn.create_state_machine(name=f"c-{uuid.uuid4().hex[:8]}", definition=json.dumps(asl),
                                  roleArn="arn:aws:iam::123456789012:role/toy")
    arn = sfn.start_execution(stateMachineArn=sm["stateMachineArn"], name=uuid.uuid4().hex,
                              input=json.dumps(inp))["executionArn"]
    desc = engine.wait(arn, timeout_s=60)
    runs = sfn.list_map_runs(executionArn=arn)["mapRuns"]
    desc["map_run"] = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]) if runs else None
    desc["children"] = aslext.LEDGER.pop(arn)
    desc["sm_arn"] = sm["stateMachineArn"]
    return desc


def _items(n: int, failing=()) -> list[dict]:
    return [{"n": i, **({"fail": True} if i in failing else {})} for i in range(n)]


def test_batch_envelope_with_batch_input(engine):
    """"ItemBatcher (Map)": each child execution receives ``{"BatchInput": ..., "Items":
    [...]}``; BatchInput's ``.$`` fields are resolved against the Map state's input."""
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatch": 2,
                                    "BatchInput": {"run.$": "$.run", "fixed": "x"}})
    desc = _run(engine, asl, {"run": "r1", "items": _items(4)})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    assert json.loads(desc["output"]) == [
        {"BatchInput": {"run": "r1", "fixed": "x"}, "Items": [{"n": 0}, {"n": 1}]},
        {"BatchInput": {"run": "r1", "fixed": "x"}, "Items": [{"n": 2}, {"n": 3}]},
    ]


def test_item_selector_applies_to_each_item_before_batching(engine):
    """"ItemBatcher (Map)" and "ItemSelector (Map)": the ItemSelector transforms each item
    (``$$.Map.Item.Index``/``Value`` are the item's), then the selected items are batched."""
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatch": 3},
               ItemSelector={"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value.n",
                             "run.$": "$.run"})
    desc = _run(engine, asl, {"run": "r2", "items": _items(3)})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    assert json.loads(desc["output"]) == [{"Items": [
        {"i": 0, "v": 0, "run": "r2"}, {"i": 1, "v": 1, "run": "r2"},
        {"i": 2, "v": 2, "run": "r2"}]}]


def test_max_items_per_batch_path_and_a_count_that_does_not_divide(engine):
    """"ItemBatcher (Map)": MaxItemsPerBatch(Path) caps the items per child; 7 items by 3
    make children of 3, 3 and 1 items, in item order."""
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatchPath": "$.per_batch"})
    desc = _run(engine, asl, {"per_batch": 3, "items": _items(7)})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    out = json.loads(desc["output"])
    assert [[i["n"] for i in b["Items"]] for b in out] == [[0, 1, 2], [3, 4, 5], [6]]


def test_max_input_bytes_per_batch_limits_each_child_input(engine):
    """"ItemBatcher (Map)": MaxInputBytesPerBatch caps each child's input size; with both
    limits set, batches hold fewer items to stay under the byte limit."""
    items = [{"n": i, "pad": "x" * 20} for i in range(6)]  # 31-32 bytes each
    limit = 90  # {"Items":[...]} is 11 bytes: two items fit, three do not
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatch": 5, "MaxInputBytesPerBatch": limit})
    desc = _run(engine, asl, {"items": items})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    out = json.loads(desc["output"])
    assert [len(b["Items"]) for b in out] == [2, 2, 2]
    assert all(len(json.dumps(b, separators=(",", ":"))) <= limit for b in out)
    assert [i for b in out for i in b["Items"]] == items


@pytest.mark.parametrize(("tolerated", "failing", "status"), [
    (20, {0, 1}, "SUCCEEDED"),  # 2 of 10 = 20 %: not above 20 %
    (20, {0, 1, 2}, "FAILED"),  # 30 % > 20 %
    (19.5, {0, 1}, "FAILED"),  # a float percentage
])
def test_tolerated_failure_percentage(engine, tolerated, failing, status):
    """"Setting failure thresholds for Distributed Map states": the Map Run fails when the
    percentage of failed items exceeds ToleratedFailurePercentage (integers accepted)."""
    asl = _asl(engine, ToleratedFailurePercentage=tolerated)
    desc = _run(engine, asl, {"items": _items(10, failing)})
    assert desc["status"] == status, desc.get("cause")
    assert desc["map_run"]["toleratedFailurePercentage"] == float(tolerated)
    assert desc["map_run"]["itemCounts"]["failed"] == len(failing)


@pytest.mark.parametrize(("fields", "failing", "status"), [
    ({"ToleratedFailureCount": 2}, {3, 7}, "SUCCEEDED"),  # 2 failed, 2 tolerated
    ({"ToleratedFailureCount": 1}, {3, 7}, "FAILED"),
    ({"ToleratedFailureCountPath": "$.tolerate"}, {3, 7}, "SUCCEEDED"),
])
def test_tolerated_failure_count(engine, fields, failing, status):
    """"Setting failure thresholds for Distributed Map states": the Map Run fails when the
    number of failed items exceeds ToleratedFailureCount(Path)."""
    desc = _run(engine, _asl(engine, **fields), {"tolerate": 2, "items": _items(10, failing)})
    assert desc["status"] == status, desc.get("cause")


def test_failed_batch_counts_all_its_items(engine):
    """"Setting failure thresholds for Distributed Map states": with ItemBatcher, a failed
    child execution fails every item of its batch (3 items > ToleratedFailureCount 2)."""
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatch": 3}, ToleratedFailureCount=2)
    desc = _run(engine, asl, {"items": _items(9, {4})})
    assert desc["status"] == "FAILED"
    assert desc["error"] == "States.ExceedToleratedFailureThreshold"


def test_threshold_failure_error_name(engine):
    """"Error handling in Step Functions" (States.ExceedToleratedFailureThreshold): a Map
    state whose failed items exceed the threshold fails with that error, which Catch sees."""
    asl = _asl(engine, ToleratedFailureCount=0)
    asl["States"]["Fan"]["Catch"] = [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"],
                                      "ResultPath": "$.caught", "Next": "Done"}]
    asl["States"]["Fan"].pop("End")
    asl["States"]["Fan"]["Next"] = "Done"
    asl["States"]["Done"] = {"Type": "Pass", "End": True}
    desc = _run(engine, asl, {"items": _items(3, {1})})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    assert json.loads(desc["output"])["caught"]["Error"] == \
        "States.ExceedToleratedFailureThreshold"


def test_no_tolerance_first_failed_child_fails_the_map(engine):
    """"Setting failure thresholds for Distributed Map states": without a threshold, the Map
    Run fails when any child execution fails (no ``null`` output in its place)."""
    desc = _run(engine, _asl(engine), {"items": _items(5, {2})})
    assert desc["status"] == "FAILED"
    assert desc["error"] == "States.ExceedToleratedFailureThreshold"
    assert desc["map_run"]["status"] == "FAILED"


def test_express_children_accepted_and_definition_kept(engine):
    """"Map state in Distributed mode" (ProcessorConfig): ExecutionType EXPRESS is accepted;
    describe_state_machine returns the definition as written."""
    asl = _asl(engine, "EXPRESS", ItemBatcher={"MaxItemsPerBatch": 2},
               ToleratedFailurePercentage=5)
    desc = _run(engine, asl, {"items": _items(3)})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    stored = engine.client("stepfunctions").describe_state_machine(
        stateMachineArn=desc["sm_arn"])["definition"]
    assert json.loads(stored) == asl
    assert [c.execution_type for c in desc["children"]] == ["EXPRESS", "EXPRESS"]


def test_map_run_counts_items_not_batches(engine):
    """"Examining Map Runs": itemCounts count items, executionCounts child executions."""
    asl = _asl(engine, ItemBatcher={"MaxItemsPerBatch": 2})
    desc = _run(engine, asl, {"items": _items(5)})
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    run = desc["map_run"]
    assert run["itemCounts"]["total"] == 5 and run["itemCounts"]["succeeded"] == 5
    assert run["itemCounts"]["pending"] == 0 and run["itemCounts"]["running"] == 0
    assert run["executionCounts"]["total"] == 3 and run["executionCounts"]["succeeded"] == 3
    assert sorted(c.items for c in desc["children"]) == [1, 2, 2]


# --- the pure parts ------------------------------------------------------------------------
def test_make_batches_refuses_an_item_over_the_byte_limit():
    with pytest.raises(ValueError, match="does not fit"):
        aslext.make_batches([{"x": "y" * 50}], None, None, 40)


def test_tolerance_arithmetic_boundaries():
    assert not aslext.Tolerance(total=10, percentage=10.0, failed=1).exceeded()
    assert aslext.Tolerance(total=10, percentage=10.0, failed=2).exceeded()
    assert not aslext.Tolerance(total=10, count=2, failed=2).exceeded()
    assert aslext.Tolerance(total=10, count=2, percentage=50.0, failed=3).exceeded()
    assert aslext.Tolerance(total=10, failed=1).exceeded()
    assert not aslext.Tolerance(total=10, failed=0).exceeded()


def test_split_leaves_other_states_alone():
    asl = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "M", "States": {"M": {
            "Type": "Map", "End": True, "ItemBatcher": {"MaxItemsPerBatch": 2},
            "ToleratedFailurePercentage": 10,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED",
                                                  "ExecutionType": "EXPRESS"},
                              "StartAt": "X", "States": {"X": {"Type": "Pass", "End": True}}}}}}]}}}
    stripped, found = aslext.split(asl)
    (path, feats), = found.items()
    assert path == ("P", 0, "M")
    assert feats.batcher == {"MaxItemsPerBatch": 2} and feats.execution_type == "EXPRESS"
    assert feats.tolerance == {"ToleratedFailurePercentage": 10}
    m = stripped["States"]["P"]["Branches"][0]["States"]["M"]
    assert "ItemBatcher" not in m and "ToleratedFailurePercentage" not in m
    assert m["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert asl["States"]["P"]["Branches"][0]["States"]["M"]["ItemBatcher"]  # input untouched
