"""Which ASL features of our state machine moto 5.2.5 cannot run the way AWS does.

``scan(asl)`` walks every state (Map item processors and Parallel branches included) and
returns one plain sentence per finding. The runner prints them and puts them in its output
as ``local_engine_notes`` so a local run never silently differs from AWS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

ALWAYS = (
    "Lambda functions run in-process from functions/<stage>/app.py with this Python "
    "environment (the template's layers and MemorySize are not applied; each function's "
    "Timeout is, on this machine's shared cores: a handler past it answers Sandbox.Timedout).",
    "IAM roles and policies are created but not enforced by moto: a missing permission in "
    "template.yaml does not fail a local run.",
    "All functions share this machine's cores (on Lambda each invoke has its own), so local "
    "stage times include waiting for the other Map children running at the same time; the "
    "functions' Timeouts and the Tasks' TimeoutSeconds are AWS-sized and a loaded machine can "
    "exceed them.",
    "The Infer function's invokes take turns on the one model loaded in this process (on AWS "
    "each concurrent invoke has its own container); the wait for a turn counts neither towards "
    "the Task's TimeoutSeconds nor as billed time.",
    "The bucket's lifecycle rule (expire tmp/ intermediates) does not run locally.",
)


def _walk(states: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    for name, state in (states or {}).items():
        where = f"{path}{name}"
        yield where, state
        proc = state.get("ItemProcessor") or state.get("Iterator")
        if proc:
            yield from _walk(proc.get("States"), f"{where}/")
        for i, branch in enumerate(state.get("Branches") or []):
            yield from _walk(branch.get("States"), f"{where}[{i}]/")


def _map_notes(where: str, state: dict) -> list[str]:
    proc = state.get("ItemProcessor") or {}
    config = proc.get("ProcessorConfig") or {}
    if config.get("Mode") != "DISTRIBUTED":
        return []
    notes = [
        f"{where}: DISTRIBUTED Map child executions run as threads of this process and have no "
        "execution history of their own (ItemBatcher, EXPRESS children and ToleratedFailure* "
        "are run by yolo_sfn.local.aslext around moto's interpreter)."
    ]
    if config.get("ExecutionType") == "EXPRESS":
        notes.append(f"{where}: EXPRESS children run like STANDARD ones locally (exactly once, "
                     "no 5-minute limit); on AWS they run at least once.")
    batch_input = json.dumps((state.get("ItemBatcher") or {}).get("BatchInput"))
    if "States." in batch_input:
        notes.append(f"{where}: ItemBatcher BatchInput takes JSONPaths only locally "
                     "(intrinsic functions are not evaluated).")
    if "ResultWriter" in state:
        notes.append(f"{where}: ResultWriter writes only an empty manifest on moto.")
    reader = (state.get("ItemReader") or {}).get("ReaderConfig") or {}
    if reader.get("InputType") in ("JSONL", "MANIFEST"):
        notes.append(f"{where}: ItemReader InputType {reader['InputType']} is unsupported.")
    return notes


def _task_notes(where: str, state: dict) -> list[str]:
    resource = str(state.get("Resource", ""))
    notes = []
    if resource.startswith("arn:aws:states:::states:startExecution"):
        notes.append(f"{where}: states:startExecution integrations are broken on moto.")
    if resource.startswith("arn:aws:states:::aws-sdk:s3:getObject"):
        notes.append(f"{where}: aws-sdk:s3:getObject output cannot be serialised on moto.")
    return notes


def scan(asl: dict) -> list[str]:
    """Plain-language notes on what the local engine runs differently from AWS."""
    notes = list(ALWAYS)
    if asl.get("QueryLanguage") == "JSONata":
        notes.append("QueryLanguage JSONata is parsed but not evaluated by moto.")
    for where, state in _walk(asl.get("States") or {}):
        if state.get("QueryLanguage") == "JSONata":
            notes.append(f"{where}: JSONata is parsed but not evaluated by moto.")
        if state.get("Type") == "Map":
            notes += _map_notes(where, state)
        elif state.get("Type") == "Task":
            notes += _task_notes(where, state)
    timed = [w for w, s in _walk(asl.get("States") or {}) if "TimeoutSeconds" in s]
    if timed:
        notes.append(
            "A function past its Timeout answers Sandbox.Timedout and a Task past its "
            "TimeoutSeconds fails with States.Timeout, as on AWS, but the in-process handler "
            "cannot be stopped: it runs on, unrecorded, until it returns "
            f"({len(timed)} Task(s) with TimeoutSeconds)."
        )
    return notes


def retried_errors(asl: dict) -> frozenset[str]:
    """Every error name a Task's ``Retry`` lists (``ErrorEquals``): what the state machine
    retries rather than records as the image's failure."""
    return frozenset(name for _, state in _walk(asl.get("States") or {})
                     for rule in state.get("Retry") or () for name in rule.get("ErrorEquals", ()))


def task_timeouts(asl: dict) -> dict[str, tuple[int, str]]:
    """``{state name: (TimeoutSeconds, function reference)}`` for Tasks with a fixed timeout."""
    out = {}
    for where, state in _walk(asl.get("States") or {}):
        if state.get("Type") == "Task" and isinstance(state.get("TimeoutSeconds"), int):
            params = state.get("Parameters") or state.get("Arguments") or {}
            ref = str(params.get("FunctionName") or state.get("Resource", ""))
            out[where.rsplit("/", 1)[-1]] = (int(state["TimeoutSeconds"]), ref)
    return out
