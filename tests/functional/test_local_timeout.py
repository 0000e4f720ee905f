"""An Infer Task past its TimeoutSeconds, and an Infer function past its own Timeout, on toy
stacks of their own.

The first toy's Infer Task clock (2 s) is shorter than its function's Timeout (30 s): it
exercises the engine's Task clock, in a configuration the real template never has (there every
Task outlasts its function by 12 s, tests/unit/test_template_batching.py), because on AWS the
function would go on running after the Catch. The second toy is shaped like the real template.

A module of its own: the toy's 2 s Infer ``TimeoutSeconds`` would bound every other test's
Infer calls (a loaded machine can stall a Map thread that long), and two engines cannot run
at once in one process, so it cannot share ``test_local_engine``'s module-wide stack.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from fixtures.toystack import write_toy_project

from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault
from yolo_sfn.local.template import load_cfn_yaml

REPO = Path(__file__).resolve().parents[2]


def init_margin_s() -> int:
    """How much longer template.yaml's Infer Task waits than its function may run (12 s)."""
    doc = load_cfn_yaml(REPO / "template.yaml")
    subs = doc["Resources"]["DetectStateMachine"]["Properties"]["DefinitionSubstitutions"]
    return int(subs["InferTaskTimeout"]) - doc["Parameters"]["InferTimeout"]["MaxValue"]


def test_task_timeout_is_caught(tmp_path):
    toy = write_toy_project(tmp_path / "toy", infer_timeout_s=2)
    with LocalEngine(toy, retry_scale=0.0) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images" / "girl.png"])
        eng.router.faults = [Fault("infer", "timeout", match="girl.png")]
        run = eng.execute({"images": uris, "batch_id": "timeout"}, timeout_s=60)
        assert eng.router.task_timeouts["infer"] == 2
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    (img,) = run.summary["images"]
    assert img["status"] == "failed"
    assert img["error"]["stage"] == "infer" and img["error"]["type"] == "States.Timeout"


def test_a_function_past_its_timeout_ends_before_its_task(tmp_path):
    """As the real template is set: the function (2 s Timeout) times out itself, inside its
    Task's clock (2 s + the template's margin), so RecordBatchFailure only starts once Infer
    has ended, and the image records Lambda's own error, not a Task timeout."""
    margin = init_margin_s()
    assert margin >= 10  # Lambda's Init limit
    toy = write_toy_project(tmp_path / "toy", infer_timeout_s=2 + margin)
    template = toy / "template.yaml"
    text = template.read_text(encoding="utf-8")
    assert text.count("    Timeout: 30\n") == 1  # the toy's Globals
    template.write_text(text.replace("    Timeout: 30\n", "    Timeout: 2\n"), encoding="utf-8")
    with LocalEngine(toy, retry_scale=0.0) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images" / "girl.png"])
        eng.router.faults = [Fault("infer", "timeout", match="girl.png")]
        run = eng.execute({"images": uris, "batch_id": "fn-timeout"}, timeout_s=60)
        assert eng.router.task_timeouts["infer"] == 2 + margin
        infers = eng.router.attempts_for("infer")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert [a.outcome for a in infers] == ["timeout"]
    (img,) = run.summary["images"]
    assert img["status"] == "failed"
    assert img["error"]["stage"] == "infer" and img["error"]["type"] == "Sandbox.Timedout"
    assert "2.00 seconds" in img["error"]["message"]


def test_a_handler_running_past_its_timeout_answers_sandbox_timedout(tmp_path):
    """No injected fault: the toy's Infer handler really sleeps 4 s past a 2 s Timeout. The
    invoke answers Lambda's own error at the function's Timeout, long before its Task clock,
    and the batch is recorded failed at infer while the stuck handler is left to finish."""
    margin = init_margin_s()
    # one environment for all functions (as template.yaml's): per-function values would make
    # every invoke wait for the stuck handler's turn on os.environ
    toy = write_toy_project(tmp_path / "toy", infer_timeout_s=2 + margin, per_function_env=False)
    template = toy / "template.yaml"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("    Timeout: 30\n", "    Timeout: 2\n"), encoding="utf-8")
    app = toy / "functions" / "infer" / "app.py"
    app.write_text("import time\n" + app.read_text(encoding="utf-8").replace(
        "    batch_id, items, batched = unpack(event)\n",
        "    batch_id, items, batched = unpack(event)\n    time.sleep(4)\n"), encoding="utf-8")
    with LocalEngine(toy, retry_scale=0.0) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images" / "girl.png"])
        run = eng.execute({"images": uris, "batch_id": "real-timeout"}, timeout_s=60)
        infers = eng.router.attempts_for("infer")
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert [(a.outcome, a.error_type) for a in infers] == [("timeout", "Sandbox.Timedout")]
    assert 2000 <= infers[0].duration_ms < 2000 + margin * 1000
    (img,) = run.summary["images"]
    assert img["status"] == "failed"
    assert img["error"]["stage"] == "infer" and img["error"]["type"] == "Sandbox.Timedout"
    assert "2.00 seconds" in img["error"]["message"]
