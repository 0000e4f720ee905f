"""template.yaml grants the batch id lock (``yolo_sfn.workflow.batchlock``) exactly what it
uses: Plan a PutItem of lock-shaped items and DescribeExecution of this stack's own executions
(named without a reference to the state machine, so no circular dependency), Summarize a
DeleteItem; no other function gains DynamoDB or Step Functions rights."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolo_sfn.local.template import load_cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
LOCK_ATTRIBUTES = {"batch_id", "image_id", "execution_arn", "started"}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_cfn_yaml(ROOT / "template.yaml")


def statements(template: dict, function: str) -> list[dict]:
    props = template["Resources"][function]["Properties"]
    return [s for p in props["Policies"] for s in p.get("Statement", [])]


def actions(statement: dict) -> set[str]:
    a = statement["Action"]
    return {a} if isinstance(a, str) else set(a)


def test_plan_may_write_only_lock_items_and_read_only_this_stacks_executions(template):
    by_action = {a: s for s in statements(template, "PlanFunction") for a in actions(s)}
    put = by_action["dynamodb:PutItem"]
    assert put["Resource"] == {"Fn::GetAtt": ["ResultsTable", "Arn"]}
    allowed = put["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert set(allowed) == LOCK_ATTRIBUTES
    describe = by_action["states:DescribeExecution"]["Resource"]["Fn::Sub"]
    name = template["Resources"]["DetectStateMachine"]["Properties"]["Name"]["Fn::Sub"]
    assert describe.endswith(f":execution:{name}:*")
    assert {a for a in by_action if a.startswith(("dynamodb:", "states:"))} == {
        "dynamodb:PutItem", "states:DescribeExecution"}


def test_summarize_may_delete_and_no_image_stage_gains_lock_rights(template):
    summarize = {a for s in statements(template, "SummarizeFunction") for a in actions(s)}
    assert {"dynamodb:DeleteItem", "dynamodb:Query"} <= summarize
    for fn in ("PreprocessFunction", "InferFunction", "PostprocessFunction", "StoreFunction"):
        granted = {a for s in statements(template, fn) for a in actions(s)}
        assert not granted & {"dynamodb:PutItem", "dynamodb:DeleteItem",
                              "states:DescribeExecution"}, fn
