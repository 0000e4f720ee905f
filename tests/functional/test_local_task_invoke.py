"""``lambda:invoke`` Tasks call the router directly (``Router.task_invoke``) instead of going
through a botocore Lambda client and moto's Lambda API; the ASL must see the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local import compat
from yolo_sfn.local.engine import LocalEngine
from yolo_sfn.local.invoke import Fault, Router
from yolo_sfn.local.testing import write_toy_project

REPO = Path(__file__).resolve().parents[2]


def _outcome(direct: bool, toy, monkeypatch, calls):
    faults = [Fault("preprocess", "throttle", match="dog.jpg", times=2),
              Fault("infer", "s3_transient", match="kite.jpg", times=1),
              Fault("postprocess", "crash", match="person.jpg", times=None)]
    original = Router._direct_function

    def spy(self, parameters, region):
        fn = original(self, parameters, region) if direct else None
        calls.append(fn is not None)
        return fn

    monkeypatch.setattr(Router, "_direct_function", spy)
    with LocalEngine(toy, retry_scale=0.0, faults=faults) as eng:
        eng.deploy()
        uris, _ = eng.upload_inputs([REPO / "testdata" / "images"])
        run = eng.execute({"images": uris, "batch_id": "same"}, timeout_s=60)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
    drop = ("execution_arn", "summary_uri", "results_prefix")  # the bucket name is random
    summary = {k: v for k, v in run.summary.items() if k not in drop}
    for img in summary["images"]:
        img.pop("result_uri", None)
        if img.get("error"):
            img["error"] = {k: v for k, v in img["error"].items() if k != "message"}
    attempts = sorted((a.stage, a.image or "", a.attempt, a.outcome, a.error_type or "",
                       a.injected or "") for a in run.attempts)
    return summary, attempts, sorted(run.retry_waits)


def test_direct_task_invoke_matches_motos_lambda_path(tmp_path, monkeypatch):
    toy = write_toy_project(tmp_path / "toy")
    direct_calls, moto_calls = [], []
    direct = _outcome(True, toy, monkeypatch, direct_calls)
    via_moto = _outcome(False, toy, monkeypatch, moto_calls)
    assert direct_calls and all(direct_calls)
    assert moto_calls and not any(moto_calls)
    assert direct == via_moto
    summary, attempts, waits = direct
    # the toy's one Retry (1 s, x2, 3 attempts) took the two throttles (1 s, 2 s) and the
    # transient error (1 s); the crash was caught
    assert [a[2] for a in attempts if a[0] == "preprocess" and a[1].endswith("dog.jpg")] \
        == [1, 2, 3]
    assert waits == [1.0, 1.0, 2.0]
    (failed,) = [i for i in summary["images"] if i["status"] == "failed"]
    assert failed["uri"].endswith("person.jpg")
    assert failed["error"]["type"] == "RuntimeError"


def test_pin_check_covers_the_task_invoke_hook(monkeypatch):
    import importlib

    mod = importlib.import_module(compat.LAMBDA_EVAL_UTILS)

    def moved(parameters, region):  # a changed signature
        return None

    monkeypatch.setattr(mod, "_invoke_lambda_function", moved)
    with pytest.raises(compat.LocalEngineError, match="_invoke_lambda_function"):
        compat.check_moto()


def test_finished_interpreter_threads_are_pruned():
    import importlib
    import threading

    threads = importlib.import_module(compat.PARSER_UTILS).TMP_THREADS
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    stop = threading.Event()
    alive = threading.Thread(target=stop.wait)
    alive.start()
    threads += [done, alive]
    try:
        assert compat.prune_finished_threads() >= 1
        assert done not in threads
        assert alive in threads
    finally:
        stop.set()
        alive.join()
        compat.prune_finished_threads()
