"""An Infer Task past its TimeoutSeconds, on a toy stack of its own.

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

REPO = Path(__file__).resolve().parents[2]


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
