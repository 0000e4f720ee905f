"""template.yaml + statemachine/detect.asl.json: structure, wiring and least privilege."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from yolo_sfn import env
from yolo_sfn.local.template import load_cfn_yaml
from yolo_sfn.workflow.handlers import LOGICAL_IDS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "detect.asl.json"
STAGES = ("Preprocess", "Infer", "Postprocess", "Store")
LAMBDA_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException",
                 "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_cfn_yaml(TEMPLATE)


@pytest.fixture(scope="module")
def asl_text() -> str:
    return ASL.read_text()


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def asl_with(asl_text: str, template: dict, **values) -> dict:
    """The ASL with parameter substitutions at their template defaults (or ``values``) and
    fake ARNs for the rest."""
    params = template["Parameters"]
    subs = template["Resources"]["DetectStateMachine"]["Properties"]["DefinitionSubstitutions"]
    fake = {}
    for name, ref in subs.items():
        param = ref.get("Ref") if isinstance(ref, dict) else None
        if name in values:
            fake[name] = str(values[name])
        elif not isinstance(ref, dict):  # a literal (the Task clocks)
            fake[name] = str(ref)
        elif param in params:
            fake[name] = str(params[param]["Default"])
        else:
            fake[name] = f"arn:aws:lambda:us-east-1:1:function:{name}"
    return json.loads(substitute(asl_text, fake))


@pytest.fixture(scope="module")
def asl(asl_text: str, template: dict) -> dict:
    return asl_with(asl_text, template)


def resources(template: dict, rtype: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def iter_tasks(states: dict):
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        if state["Type"] == "Map":
            yield from iter_tasks(state["ItemProcessor"]["States"])


def statements(props: dict) -> list[dict]:
    out = []
    for policy in props.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            out.extend(policy["Statement"])
    return out


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


# --- template ----------------------------------------------------------------------------
def test_template_is_sam_with_the_contract_logical_ids(template: dict) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    res = template["Resources"]
    for logical in (*LOGICAL_IDS.values(), "RuntimeLayer", "ImageLayer", "NumpyLayer",
                    "CoreLayer", "ArtifactsBucket", "ResultsTable", "DetectStateMachine"):
        assert logical in res, logical
    sized = [f"{s}{k}" for s in ("Plan", *STAGES, "Summarize") for k in ("MemorySize", "Timeout")]
    for p in ("ModelUri", "ScoreThreshold", "IouThreshold", "ResizeMode", "MapConcurrency",
              "InputBucketNames", "Architecture", *sized):
        assert p in template["Parameters"], p
    assert template["Parameters"]["InputBucketNames"]["Type"] == "CommaDelimitedList"
    for out in ("StateMachineArn", "ArtifactsBucketName", "ResultsTableName"):
        assert "Export" in template["Outputs"][out]


def test_functions_point_at_thin_handlers_with_layers(template: dict) -> None:
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12" and glob["Handler"] == "app.handler"
    assert {"Ref": "CoreLayer"} in glob["Layers"]
    for stage, logical in LOGICAL_IDS.items():
        props = template["Resources"][logical]["Properties"]
        assert props["CodeUri"].rstrip("/") == f"functions/{stage}"
        assert (ROOT / "functions" / stage / "app.py").is_file()
        assert template["Resources"][logical]["Metadata"]["BuildMethod"] == "makefile"
        # each function carries only what it imports (details: test_template_layers.py)
        own = {"preprocess": ["ImageLayer"], "infer": ["RuntimeLayer"],
               "postprocess": ["NumpyLayer"]}.get(stage, [])
        assert props.get("Layers", []) == [{"Ref": layer} for layer in own], stage
    infer = template["Parameters"]["InferMemorySize"]["Default"]
    assert infer >= 3008 and all(
        template["Parameters"][f"{s}MemorySize"]["Default"] <= infer
        for s in ("Plan", "Preprocess", "Postprocess", "Store", "Summarize"))


def test_globals_environment_uses_the_names_in_env_py(template: dict) -> None:
    names = {v for k, v in vars(env).items() if k.isupper() and isinstance(v, str)}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert names <= set(variables), names - set(variables)


def test_artifacts_bucket_is_private_encrypted_tls_only_and_expires_tmp(template: dict) -> None:
    props = template["Resources"]["ArtifactsBucket"]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "tmp/" and r["ExpirationInDays"] == 1 for r in rules)
    policy = resources(template, "AWS::S3::BucketPolicy")["ArtifactsBucketPolicy"]["Properties"]
    deny = policy["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


# checkov (``make checkov``) findings accepted on purpose; anything else must be fixed.
CHECKOV_SKIPS = {
    "ArtifactsBucket": {"CKV_AWS_18", "CKV_AWS_21"},  # access logs, versioning
    "ResultsTable": {"CKV_AWS_119"},  # customer managed KMS key
    **{fn: {"CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}  # DLQ, VPC, env encryption
       | ({"CKV_AWS_115"} if fn != "InferFunction" else set())  # reserved concurrency
       for fn in LOGICAL_IDS.values()},
}


def test_checkov_skips_are_the_reviewed_list_each_with_a_reason(template: dict) -> None:
    found = {}
    for logical, res in template["Resources"].items():
        skips = res.get("Metadata", {}).get("checkov", {}).get("skip", [])
        for skip in skips:
            assert len(skip["comment"]) >= 40 and "\n" not in skip["comment"], (logical, skip)
        if skips:
            found[logical] = {skip["id"] for skip in skips}
    assert found == CHECKOV_SKIPS
    infer = template["Resources"]["InferFunction"]["Properties"]
    assert infer["ReservedConcurrentExecutions"]["Fn::If"][1] == {
        "Ref": "InferReservedConcurrency"}


def test_results_table_schema_billing_sse_pitr(template: dict) -> None:
    props = template["Resources"]["ResultsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "batch_id", "KeyType": "HASH"},
                                  {"AttributeName": "image_id", "KeyType": "RANGE"}]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_no_wildcard_action_on_wildcard_resource(template: dict) -> None:
    for logical, res in template["Resources"].items():
        for st in statements(res.get("Properties", {})):
            if st["Effect"] != "Allow":
                continue
            actions = as_list(st["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (logical, st)
            assert "*" not in as_list(st["Resource"]), (logical, st)


def _references_artifacts_bucket(resource) -> bool:
    text = json.dumps(resource)
    return "ArtifactsBucket" in text and "InputBucketNames" not in text


def test_no_function_can_write_outside_the_artifacts_bucket(template: dict) -> None:
    writes = re.compile(r"^s3:(Put|Delete|Restore|Replicate|Abort)")
    for logical in LOGICAL_IDS.values():
        for st in statements(template["Resources"][logical]["Properties"]):
            if any(writes.match(a) for a in as_list(st["Action"])):
                assert all(_references_artifacts_bucket(r) for r in as_list(st["Resource"])), (
                    logical, st)


def test_input_buckets_are_read_only_and_table_access_is_scoped(template: dict) -> None:
    for logical in LOGICAL_IDS.values():
        for st in statements(template["Resources"][logical]["Properties"]):
            if "InputBucketNames" in json.dumps(st["Resource"]):
                assert set(as_list(st["Action"])) <= {"s3:GetObject", "s3:ListBucket"}, st
            if any(a.startswith("dynamodb:") for a in as_list(st["Action"])):
                assert st["Resource"] == {"Fn::GetAtt": ["ResultsTable", "Arn"]}, st


def test_join_delimiters_are_literal_strings(template: dict) -> None:
    """CloudFormation rejects a Fn::Join whose delimiter is a function (e.g. !Sub): "every
    Fn::Join object requires two parameters, (1) a string delimiter ..." (cfn-lint's E1018
    catches it only sometimes)."""
    def walk(node, path):
        if isinstance(node, dict):
            if "Fn::Join" in node:
                assert isinstance(node["Fn::Join"][0], str), path
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(template, "")


# --- state machine -----------------------------------------------------------------------
def test_every_substitution_is_defined_and_used(template: dict, asl_text: str) -> None:
    sm = template["Resources"]["DetectStateMachine"]["Properties"]
    assert sm["DefinitionUri"] == "statemachine/detect.asl.json" and sm["Type"] == "STANDARD"
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    assert used == set(sm["DefinitionSubstitutions"])
    assert {"PlanFunctionArn", "MapConcurrency", "ArtifactsBucket"} <= used
    assert "arn:aws:lambda" not in asl_text  # no hard-coded ARNs


def test_state_machine_may_invoke_each_function_and_run_map_children(template: dict) -> None:
    policies = template["Resources"]["DetectStateMachine"]["Properties"]["Policies"]
    invoked = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in policies
               if "LambdaInvokePolicy" in p}
    assert invoked == set(LOGICAL_IDS.values())
    sts = [s for p in policies if "Statement" in p for s in p["Statement"]]
    actions = {a for s in sts for a in as_list(s["Action"])}
    assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution",
            "s3:GetObject"} <= actions


def test_asl_shape(asl: dict) -> None:
    states = asl["States"]
    assert asl["StartAt"] == "Plan" and states["Plan"]["Next"] == "DetectImages"
    m = states["DetectImages"]
    assert m["Type"] == "Map" and m["ResultPath"] is None and m["Label"]
    assert m["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED",
                                                     "ExecutionType": "EXPRESS"}
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert m["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
    assert m["ItemBatcher"] == {
        "MaxItemsPerBatch": 24,
        "BatchInput": {"batch_id.$": "$.batch_id", "params.$": "$.params",
                       "execution_arn.$": "$.execution_arn", "model_ref.$": "$.model_ref"}}
    assert "ResultWriter" not in m
    assert isinstance(m["MaxConcurrency"], int) and "ToleratedFailurePercentage" in m
    # per item only what differs; what every item shares travels once per batch (BatchInput)
    assert m["ItemSelector"] == {"image_id.$": "$$.Map.Item.Value.image_id",
                                 "uri.$": "$$.Map.Item.Value.uri"}
    assert m["Next"] == "Summarize"
    inner = m["ItemProcessor"]["States"]
    assert m["ItemProcessor"]["StartAt"] == "Preprocess"
    assert [inner[s].get("Next") for s in STAGES] == [*STAGES[1:], None]
    for end in ("Store", "RecordBatchFailure"):  # the Map gathers {} per child, not payloads
        assert end in inner and inner[end]["OutputPath"] is None and inner[end]["End"] is True
    assert "JSONata" not in json.dumps(asl)


def test_every_task_retries_and_every_stage_catches_into_a_failure_record(asl: dict) -> None:
    inner = asl["States"]["DetectImages"]["ItemProcessor"]["States"]
    for name, task in iter_tasks(asl["States"]):
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert "OutputPath" in task or task.get("ResultPath"), name
        assert task["TimeoutSeconds"] > 0, name
        retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
        assert LAMBDA_ERRORS | {"TransientAwsError"} <= retried, name
        for r in task["Retry"]:
            assert r["IntervalSeconds"] >= 1 and r["BackoffRate"] >= 1 and r["MaxAttempts"] >= 1
        assert "States.ALL" not in retried, name
    for stage in STAGES:
        catch = inner[stage]["Catch"]
        assert catch == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                          "Next": f"Record{stage}Failure"}]
        stamp = inner[f"Record{stage}Failure"]
        assert stamp["Type"] == "Pass" and stamp["Result"] == stage.lower()
        assert stamp["ResultPath"] == "$.stage" and stamp["Next"] == "RecordBatchFailure"
    record = inner["RecordBatchFailure"]
    assert record["End"] is True and "Catch" not in record
    assert record["Parameters"]["FunctionName"].endswith(":StoreFunctionArn")


def test_state_timeouts_outlast_the_function_timeouts(template: dict, asl: dict) -> None:
    """Each Task's TimeoutSeconds is fixed, above the largest Timeout its function accepts:
    the function always ends (or times out itself) before its Task does
    (tests/unit/test_template_batching.py checks the margin)."""
    fns = {"Plan": "PlanFunction", **{s: f"{s}Function" for s in STAGES},
           "RecordBatchFailure": "StoreFunction", "Summarize": "SummarizeFunction"}
    states = {**asl["States"], **asl["States"]["DetectImages"]["ItemProcessor"]["States"]}
    for state, fn in fns.items():
        param = template["Parameters"][template["Resources"][fn]["Properties"]["Timeout"]["Ref"]]
        assert states[state]["TimeoutSeconds"] > param["MaxValue"] >= param["Default"], state
