"""The batching arithmetic of template.yaml + statemachine/detect.asl.json: no Lambda Task
times out while its function can still run, an EXPRESS child fits in its 5 minutes whatever
the template accepts, and the largest batch it accepts fits in Infer's timeout for YOLOv4-608
at the default Infer memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from yolo_sfn.bench.cost import speedup, vcpus_for_memory
from yolo_sfn.local.template import load_cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
EXPRESS_LIMIT_S = 300  # "Express workflows can run for up to five minutes" (AWS quotas page)
# Lambda throttling is answered by the Invoke API (429) before the function runs, so a
# throttled attempt costs only its retry interval, never a TimeoutSeconds.
NOT_RUN = {"Lambda.TooManyRequestsException"}
# "The Init phase is limited to 10 seconds. If all three tasks do not complete within 10
# seconds, Lambda retries the Init phase at the time of the first function invocation with the
# configured function timeout" (Lambda developer guide, "Understanding the Lambda execution
# environment lifecycle", Init phase): a cold invoke can last 10 s + the function's Timeout.
# The rest of a cold start (placement, code download) and the Invoke round trip: "from under
# 100 ms to over 1 second" (same guide, "Cold starts and latency"); 2 s is allowed for them.
LAMBDA_INIT_LIMIT_S = 10
INVOKE_OVERHEAD_S = 2

# YOLOv4-608 fp32 per image, from measured YOLOv4-416 figures (BENCHMARKS.md, "Scale on
# paper": 490 ms on one core, parallel efficiency ~0.9) scaled by pixels (608/416)^2, and
# its cold start: model download (245 MB at ~100 MB/s) + load + first inference, rounded up.
YOLOV4_416_ONE_CORE_MS = 490.0
PARALLEL_EFFICIENCY = 0.9
PIXELS_608_OVER_416 = (608 / 416) ** 2
COLD_START_608_S = 6.0
HEADROOM = 0.75  # a batch should need at most 75 % of Infer's timeout


@pytest.fixture(scope="module")
def template() -> dict:
    return load_cfn_yaml(ROOT / "template.yaml")


def asl_at(template: dict, bound: str) -> dict:
    """The ASL with every numeric parameter at its ``bound`` ("MaxValue" or "Default")."""
    params = template["Parameters"]
    subs = template["Resources"]["DetectStateMachine"]["Properties"]["DefinitionSubstitutions"]
    values = {}
    for name, ref in subs.items():
        p = params.get(ref.get("Ref")) if isinstance(ref, dict) else None
        if not isinstance(ref, dict):  # a literal (the Task clocks)
            values[name] = str(ref)
        elif p is None:
            values[name] = f"arn:aws:lambda:us-east-1:1:function:{name}"
        else:
            values[name] = str(p.get(bound, p["Default"]) if p["Type"] == "Number"
                               else p["Default"])
    text = (ROOT / "statemachine" / "detect.asl.json").read_text()
    return json.loads(re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text))


def task_worst_s(task: dict) -> float:
    """Every attempt that may run does so to TimeoutSeconds; plus every retry interval."""
    attempts_run, waits = 1, 0.0
    for r in task.get("Retry", []):
        n = r["MaxAttempts"]
        waits += sum(r["IntervalSeconds"] * r.get("BackoffRate", 2.0) ** k for k in range(n))
        if not set(r["ErrorEquals"]) <= NOT_RUN:
            attempts_run += n
    return attempts_run * task["TimeoutSeconds"] + waits


def worst_path_s(states: dict, name: str) -> float:
    """Longest way from ``name`` to an end: each Task at its worst, then its Next or (after
    failing) its Catch target, whichever is longer."""
    state = states[name]
    own = task_worst_s(state) if state["Type"] == "Task" else 0.0
    nexts = [state["Next"]] if "Next" in state else []
    nexts += [c["Next"] for c in state.get("Catch", [])]
    return own + max((worst_path_s(states, n) for n in nexts), default=0.0)


def child(asl: dict) -> dict:
    return asl["States"]["DetectImages"]["ItemProcessor"]


def lambda_tasks(asl: dict) -> dict[str, dict]:
    """Every Task of the parent and the child that invokes a Lambda function, by state name."""
    states = {**asl["States"], **child(asl)["States"]}
    return {name: s for name, s in states.items()
            if s["Type"] == "Task" and s["Resource"] == "arn:aws:states:::lambda:invoke"}


def test_no_lambda_task_times_out_while_its_function_may_still_run(template) -> None:
    """Step Functions starts a Task's clock at the Invoke call, so the clock must outlast the
    function's longest life: Init (<= 10 s) + its Timeout, at the largest Timeout the
    template accepts, + the invoke's round trip. A shorter clock lets States.Timeout send a
    batch to RecordBatchFailure while Store still writes its results (the two race)."""
    asl = asl_at(template, "MaxValue")
    subs = template["Resources"]["DetectStateMachine"]["Properties"]["DefinitionSubstitutions"]
    tasks = lambda_tasks(asl)
    assert {"Plan", "Preprocess", "Infer", "Postprocess", "Store", "RecordBatchFailure",
            "Summarize"} <= set(tasks)
    for name, task in tasks.items():
        sub = task["Parameters"]["FunctionName"].rsplit(":", 1)[-1]  # the fake ARN's name
        function = subs[sub]["Fn::GetAtt"][0]
        timeout = template["Resources"][function]["Properties"]["Timeout"]
        longest = template["Parameters"][timeout["Ref"]]["MaxValue"]
        need = longest + LAMBDA_INIT_LIMIT_S + INVOKE_OVERHEAD_S
        assert task["TimeoutSeconds"] >= need, (name, task["TimeoutSeconds"], need)


def test_an_express_child_ends_within_5_minutes_at_every_accepted_timeout(template) -> None:
    proc = child(asl_at(template, "MaxValue"))
    assert proc["ProcessorConfig"]["ExecutionType"] == "EXPRESS"  # the default
    worst = worst_path_s(proc["States"], proc["StartAt"])
    assert worst <= EXPRESS_LIMIT_S, f"worst case {worst:.0f} s"
    # and each stage's timeout is capped where the template says so
    for stage in ("Preprocess", "Infer", "Postprocess", "Store"):
        p = template["Parameters"][f"{stage}Timeout"]
        assert p["Default"] <= p["MaxValue"] and "5-minute" in p["ConstraintDescription"]


def yolov4_608_ms_per_image(memory_mb: int) -> float:
    return (YOLOV4_416_ONE_CORE_MS * PIXELS_608_OVER_416
            / speedup(vcpus_for_memory(memory_mb), PARALLEL_EFFICIENCY, parallel=True))


def test_the_largest_batch_of_yolov4_608_fits_infers_default_timeout(template) -> None:
    params = template["Parameters"]
    memory, timeout = params["InferMemorySize"]["Default"], params["InferTimeout"]["Default"]
    largest = params["BatchSize"]["MaxValue"]
    need_s = COLD_START_608_S + largest * yolov4_608_ms_per_image(memory) / 1000.0
    assert need_s <= HEADROOM * timeout, (need_s, timeout)
    # the bound is tight: a batch 50 % larger would not fit
    assert COLD_START_608_S + 1.5 * largest * yolov4_608_ms_per_image(memory) / 1000.0 > (
        HEADROOM * timeout)


def test_the_default_batch_meets_the_request_targets(template) -> None:
    """Issue 11's targets at the default BatchSize: <= 0.3 Lambda invokes and <= 2.5 S3
    requests per image (per image: its GET and its result PUT; per batch: three intermediate
    PUTs and three GETs; tests/functional/test_stages_pipeline.py counts them on moto)."""
    proc = child(asl_at(template, "Default"))
    size = asl_at(template, "Default")["States"]["DetectImages"]["ItemBatcher"][
        "MaxItemsPerBatch"]
    invokes = sum(1 for s in ("Preprocess", "Infer", "Postprocess", "Store")
                  if proc["States"][s]["Type"] == "Task")
    assert invokes / size <= 0.3
    assert 2 + 6 / size <= 2.5


def test_messages_accept_exactly_the_batches_the_template_allows(template) -> None:
    from yolo_sfn.workflow.messages import MAX_BATCH_ITEMS

    assert template["Parameters"]["BatchSize"]["MaxValue"] == MAX_BATCH_ITEMS
