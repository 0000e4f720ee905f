"""Out-of-process invokes of the BUILT functions (``yolo_sfn.local.workers``): each handler in
its own Python 3.12 worker with only its layers on ``sys.path``.

Needs ``sam build`` (``.aws-sam/build``) and a Python 3.12 interpreter, else skips: CI runs
``make test``, whose ``built-smoke`` target (``layers/run_built.py``: a whole batch through
every built function) is the real gate. Here: how the workers fail and report, through the
LambdaRouter, which the smoke run only exercises on its happy path.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from yolo_sfn.local.invoke import LambdaRouter
from yolo_sfn.local.template import read_template
from yolo_sfn.local.workers import BuiltFunction, WorkerPool

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"


def _run_built():
    sys.path.insert(0, str(ROOT / "layers"))  # run_built imports check_layers beside it
    try:
        spec = importlib.util.spec_from_file_location("run_built", ROOT / "layers/run_built.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "layers"))


@pytest.fixture(scope="module")
def built():
    """``(run_built module, python3.12 path, boto3 dir)``."""
    if not (BUILD / "template.yaml").is_file():
        pytest.skip("no .aws-sam/build: run `make sam-build` (make test does)")
    run_built = _run_built()
    python = run_built.find_python312(None)
    if python is None:
        pytest.skip("no Python 3.12 interpreter (python3.12 on PATH or pyenv): see README.md")
    runtime = ROOT / ".cache" / "lambda-py312"
    run_built.ensure_boto3(python, runtime)
    return run_built, python, runtime


def _fn(stage: str) -> SimpleNamespace:
    """What the LambdaRouter and the pool read from moto's LambdaFunction."""
    return SimpleNamespace(function_name=f"test-{stage}", memory_size=128, timeout=30,
                           function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{stage}",
                           architectures=["x86_64"],
                           environment_vars={"POWERTOOLS_SERVICE_NAME": "test"})


def _router(pool: WorkerPool, stage: str) -> LambdaRouter:
    router = LambdaRouter()
    router.bind(f"test-{stage}", read_template(ROOT / "template.yaml").functions[stage])
    router.out_of_process = pool.invoke
    return router


def test_a_function_without_its_layers_fails_every_invoke_as_an_import_error(built, tmp_path):
    run_built, python, runtime = built
    functions = run_built.built_functions(BUILD)
    without = {"infer": BuiltFunction(functions["infer"].code_dir, functions["infer"].handler,
                                      [])}
    with WorkerPool(without, python=python, runtime_dir=runtime, endpoint="http://127.0.0.1:9",
                    logs=tmp_path) as pool:
        router = _router(pool, "infer")
        for _ in range(2):
            body, is_error, _ = router.invoke(_fn("infer"), {"batch_id": "b", "items": []})
            assert is_error
            assert json.loads(body)["errorType"] == "Runtime.ImportModuleError"
            assert "aws_lambda_powertools" in json.loads(body)["errorMessage"]
    assert [a.error_type for a in router.attempts] == ["Runtime.ImportModuleError"] * 2


def test_a_handler_error_is_reported_by_its_type_and_the_worker_stays_warm(built, tmp_path):
    run_built, python, runtime = built
    with WorkerPool(run_built.built_functions(BUILD), python=python, runtime_dir=runtime,
                    endpoint="http://127.0.0.1:9", logs=tmp_path) as pool:
        router = _router(pool, "plan")
        for _ in range(2):
            body, is_error, _ = router.invoke(_fn("plan"), {"images": "not a list"})
            assert is_error
            payload = json.loads(body)
            assert payload["errorType"] not in ("Runtime.ImportModuleError", "Runtime.ExitError")
        info = pool.workers["plan"].describe()
    assert info["python"].startswith("3.12.")
    assert info["modules"]["yolo_sfn"].startswith(str(pool.opt_dir))
    assert [a.error_type for a in router.attempts] == [payload["errorType"]] * 2
    assert (tmp_path / "plan.log").stat().st_size > 0  # the handler's logs, off the protocol


def test_a_worker_that_died_fails_its_invokes_as_an_exit_error(built, tmp_path):
    run_built, python, runtime = built
    with WorkerPool(run_built.built_functions(BUILD), python=python, runtime_dir=runtime,
                    endpoint="http://127.0.0.1:9", logs=tmp_path) as pool:
        router = _router(pool, "plan")
        router.invoke(_fn("plan"), {"images": "not a list"})  # starts the worker
        pool.workers["plan"].proc.kill()
        pool.workers["plan"].proc.wait()
        for _ in range(2):
            body, is_error, _ = router.invoke(_fn("plan"), {"images": "not a list"})
            assert is_error
            assert json.loads(body)["errorType"] == "Runtime.ExitError"
