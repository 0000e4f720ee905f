"""Out-of-process Lambda invokes: each function of a built stack (``sam build``) runs in its
own long-lived worker process (a warm container) under another interpreter, with only its own
layers on ``sys.path``, against the parent's moto backends served over HTTP.

```python
with WorkerPool(functions, python="python3.12", runtime_dir=boto3_dir, endpoint=url,
                logs=log_dir) as pool:
    engine.router.out_of_process = pool.invoke       # see LambdaRouter._call
```

``functions``: stage -> ``BuiltFunction``. The parent's moto server is moto's
``ThreadedMotoServer``: it serves the same module-global backends as the in-process
``mock_aws``, so the workers' boto3 (``AWS_ENDPOINT_URL``) sees the engine's buckets and table.
Local tooling only: nothing here is deployed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from yolo_sfn.local import taskclock
from yolo_sfn.local.template import FunctionSpec

WORKER = Path(__file__).with_name("lambda_worker.py")


@dataclass
class BuiltFunction:
    """A function as ``sam build`` left it: its code folder, handler and layers' folders (in
    Lambda's order: a later layer's files win)."""

    code_dir: Path
    handler: str
    layers: list[Path]


class FunctionError(Exception):
    """A handler's error payload from a worker; ``error_type`` is what Lambda would report."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def lambda_error(payload: dict) -> Exception:
    """An exception whose class name is the payload's ``errorType`` (what ``error_payload``
    reports), e.g. ``ImageDecodeError`` or ``Runtime.ImportModuleError``."""
    name = str(payload.get("errorType") or "Error")
    cls = type(name, (FunctionError,), {})
    return cls(name, str(payload.get("errorMessage", "")))


class Worker:
    """One process running one function's handler, one invoke at a time."""

    def __init__(self, name: str, fn: BuiltFunction, python: str, paths: list[str],
                 env: dict[str, str], log: IO[str]) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [python, "-I", "-S", str(WORKER), str(fn.code_dir), fn.handler, *paths],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"error": {"errorType": "Runtime.ExitError",
                              "errorMessage": f"worker {self.name} exited with status {code}"}}
        return json.loads(line)

    def describe(self) -> dict:
        """``{"python": version, "modules": {top-level name: file}}`` of the worker now."""
        with self.lock:
            if "error" in self.ready:
                return {}
            self.proc.stdin.write(json.dumps({"describe": True}) + "\n")
            self.proc.stdin.flush()
            return self._read().get("ok", {})

    def call(self, event: Any, context: dict) -> Any:
        """The handler's result; raises ``lambda_error`` of its error payload. The caller
        holds ``lock``."""
        if "error" in self.ready:
            raise lambda_error(self.ready["error"])
        try:
            self.proc.stdin.write(json.dumps({"event": event, "context": context}) + "\n")
            self.proc.stdin.flush()
        except OSError:  # the worker exited: _read reports how
            pass
        reply = self._read()
        if "error" in reply:
            if reply["error"]["errorType"] == "Runtime.ExitError":
                self.ready = reply
            raise lambda_error(reply["error"])
        return reply["ok"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _link_over(src: str, dst: str) -> None:
    """Hard-link ``src`` at ``dst`` (a copy across file systems), replacing a file an earlier
    layer put there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge_layers(layers: list[Path], merged: Path) -> None:
    """Each layer's ``python/`` hard-linked into ``merged`` in order, as Lambda extracts them
    into /opt (a later layer's file replaces an earlier one's)."""
    merged.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        shutil.copytree(Path(layer) / "python", merged, dirs_exist_ok=True,
                        copy_function=_link_over)


class WorkerPool:
    """One worker per function, started on its first invoke (``invoke`` is the LambdaRouter's
    ``out_of_process`` hook). ``logs``: a folder for each worker's stderr (its logs)."""

    def __init__(self, functions: dict[str, BuiltFunction], *, python: str, runtime_dir: Path,
                 endpoint: str, logs: Path, region: str = "us-east-1") -> None:
        self.functions = functions
        self.python = python
        self.runtime_dir = Path(runtime_dir)
        self.endpoint = endpoint
        self.logs = Path(logs)
        self.region = region
        self.workers: dict[str, Worker] = {}
        self._lock = threading.Lock()
        self._files: list[IO[str]] = []
        self._opt = tempfile.TemporaryDirectory(prefix="yolo-sfn-opt-")

    @property
    def opt_dir(self) -> Path:
        """Where each function's layers are merged (``<stage>/python``), as Lambda's /opt."""
        return Path(self._opt.name)

    def __enter__(self) -> WorkerPool:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        for worker in self.workers.values():
            worker.close()
        for f in self._files:
            f.close()
        self._opt.cleanup()

    def _opt_python(self, stage: str) -> Path:
        """The function's layers merged as Lambda does into /opt (a later layer wins)."""
        merged = self.opt_dir / stage / "python"
        merge_layers(self.functions[stage].layers, merged)
        return merged

    def environment(self, stage: str, fn: Any) -> dict[str, str]:
        """What the Lambda runtime sets, the function's template ``Environment`` (as moto
        resolved it) and the endpoint of the parent's moto server."""
        return {
            "PATH": os.environ.get("PATH", ""),
            "LANG": "C.UTF-8",
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "LAMBDA_TASK_ROOT": str(self.functions[stage].code_dir),
            **{k: str(v) for k, v in (fn.environment_vars or {}).items()},
        }

    def worker(self, spec: FunctionSpec, fn: Any) -> Worker:
        with self._lock:
            worker = self.workers.get(spec.stage)
            if worker is None:
                if spec.stage not in self.functions:
                    raise FunctionError("Runtime.ImportModuleError",
                                        f"no built function for stage {spec.stage}")
                log = open(self.logs / f"{spec.stage}.log", "a", encoding="utf-8")  # noqa: SIM115
                self._files.append(log)
                paths = [str(self._opt_python(spec.stage)), str(self.runtime_dir)]
                worker = self.workers[spec.stage] = Worker(
                    spec.stage, self.functions[spec.stage], self.python, paths,
                    self.environment(spec.stage, fn), log)
            return worker

    def invoke(self, spec: FunctionSpec, fn: Any, event: Any) -> Any:
        """Run ``event`` through the function's worker; waits for its turn (not Task time)."""
        worker = self.worker(spec, fn)
        context = {"function_name": fn.function_name, "memory_limit_in_mb": fn.memory_size,
                   "invoked_function_arn": fn.function_arn, "timeout_s": float(fn.timeout)}
        with taskclock.queued():
            worker.lock.acquire()
        try:
            return worker.call(event, context)
        finally:
            worker.lock.release()
