"""In-process Lambda invokes for moto, with fault injection and an attempt log.

moto's ``LambdaFunction._invoke_lambda(self, event)`` would start Docker.
``LambdaRouter.install()`` replaces it with a call of ``functions/<stage>/app.py:handler`` in
this process: each module is imported once, exceptions become ``{"errorType", "errorMessage"}``
payloads (the error type is the exception class name, as on AWS), and every attempt is
recorded.

Environment: moto resolves each function's template ``Environment`` at deploy time. Values that
are the same for every function are put into ``os.environ`` once before the execution starts
(Map iterations run on threads and ``os.environ`` is process-global). Keys whose values differ
between functions are set per call under a lock, which serialises those calls; the runner
reports that as a local engine note.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from yolo_sfn.contract import IMAGE_STAGES
from yolo_sfn.errors import LocalEngineError, TransientAwsError, error_payload
from yolo_sfn.local import taskclock
from yolo_sfn.local.motohooks import LAMBDA_MODELS
from yolo_sfn.local.template import FunctionSpec
from yolo_sfn.workflow.handlers import import_path

FAULT_KINDS = ("s3_transient", "throttle", "crash", "timeout")
# Locally one process is one container of each function: the stage holding the loaded model
# runs one invoke at a time (its stage code serialises on the model anyway). Each invoke's wait
# for its turn counts neither as Task time (taskclock) nor as its duration: on AWS every
# concurrent invoke has its own container.
ONE_CONTAINER_STAGES = ("infer",)


@dataclass
class Fault:
    """Inject a failure before the handler of ``stage`` runs.

    ``match`` is a glob against the image key or URI (None: every invoke of the stage);
    ``times`` how many matching invokes fail (None: all of them).
    """

    stage: str
    kind: str
    match: str | None = None
    times: int | None = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r} not in {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault times must be >= 1 or 'all', got {self.times}")
        self._fired = 0

    def applies(self, stage: str, images: list[str] | str | None) -> bool:
        """Whether it fires on an invoke of ``stage`` carrying ``images`` (a batch fails as a
        whole when one of its images matches)."""
        if stage != self.stage or (self.times is not None and self._fired >= self.times):
            return False
        if self.match is None:
            return True
        if isinstance(images, str):
            images = [images]
        return any(fnmatch.fnmatchcase(image, self.match)
                   or fnmatch.fnmatchcase(image.rsplit("/", 1)[-1], self.match)
                   for image in images or ())


@dataclass
class Attempt:
    """One Lambda invoke as the state machine made it."""

    stage: str
    image: str | None  # the image key (or URI) of a one-image event; None for batches,
    # plan and summarize
    attempt: int  # 1-based, per (batch_id, stage, image) within one execution
    outcome: str  # "ok" | "error" | "throttled" | "timeout"
    error_type: str | None
    duration_ms: float
    injected: str | None = None  # the fault kind, when one fired
    memory_mb: int | None = None  # the function's MemorySize (for the billed GB-s)
    arch: str | None = None  # the function's architecture
    images: tuple[str, ...] = ()  # every image the event carries (a batch: all of them)
    failed_images: int | None = None  # Store's result: images it recorded as failed
    cpu_ms: float | None = None  # CPU time of the invoking thread: the invoke on its own
    # cores, without its waits for other Map children (locks, the GIL, the shared cores)

    def to_dict(self) -> dict:
        return asdict(self)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def throttle_error() -> Exception:
    """A 429 that the state sees as ``Lambda.TooManyRequestsException``."""
    from moto.core.exceptions import JsonRESTError

    class TooManyRequestsException(JsonRESTError):
        code = 429

        def __init__(self) -> None:
            super().__init__("TooManyRequestsException", "Rate exceeded (injected by yolo-sfn)")

    return TooManyRequestsException()


_IMAGE_FIELDS = ("uri", "key", "image_uri", "image_key")


class HandlerImportError(Exception):
    """The function's module could not be imported (Lambda: Runtime.ImportModuleError)."""


class FunctionTimedOut(Exception):
    """The handler ran past the function's Timeout (Lambda: Sandbox.Timedout)."""


def images_of(event: Any) -> list[str]:
    """The images an event is about: one per entry of a batch's ``Items``/``items`` list,
    else the one ``image_of`` finds."""
    if isinstance(event, dict):
        for name in ("Items", "items"):
            entries = event.get(name)
            if isinstance(entries, list):
                return [img for img in (image_of(e) for e in entries) if img]
    one = image_of(event)
    return [one] if one else []


def batch_of(event: Any) -> str | None:
    """The batch id of an event (top level, or in an ItemBatcher envelope's BatchInput)."""
    if not isinstance(event, dict):
        return None
    head = event.get("BatchInput") if isinstance(event.get("BatchInput"), dict) else event
    value = head.get("batch_id")
    return value if isinstance(value, str) else None


def image_of(event: Any, depth: int = 0) -> str | None:
    """The image an event is about: the first ``uri``/``key`` string found (shallow search)."""
    if not isinstance(event, dict) or depth > 3:
        return None
    for name in _IMAGE_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and value:
            return value
    for value in event.values():
        found = image_of(value, depth + 1)
        if found:
            return found
    return None


class LambdaContext:
    """The attributes handlers and Powertools read from the Lambda context."""

    def __init__(self, function_name: str, memory: int, timeout_s: float, arn: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(memory)
        self.invoked_function_arn = arn
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + float(timeout_s)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def set_environ(values: dict[str, str | None]) -> None:
    """Set each name in ``os.environ``; ``None`` removes it (restores a saved snapshot)."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def split_environment(envs: dict[str, dict[str, str]]) -> tuple[dict, dict[str, dict]]:
    """``(common, per_function)``: values shared by every function, and the differing ones."""
    keys = {k for env in envs.values() for k in env}
    common, differing = {}, set()
    for key in keys:
        values = {env.get(key) for env in envs.values()}
        if len(values) == 1:
            common[key] = values.pop()
        else:
            differing.add(key)
    per_fn = {name: {k: env[k] for k in differing if k in env} for name, env in envs.items()}
    return common, per_fn


class LambdaRouter:
    """moto's Lambda service, served in-process: routes each invoke of a moto function to its
    ``functions/<stage>/app.py`` handler (imported once), with that function's environment, a
    Lambda-like context and its Task timeout, one container for the model stage, injected
    faults, and a record of every attempt (``attempts``)."""

    def __init__(self, faults: list[Fault] | tuple = (), log_stream: Any = None) -> None:
        self.faults = list(faults)
        self.log_stream = log_stream  # where handler loggers that print to stdout write
        self.attempts: list[Attempt] = []
        self.functions: dict[str, FunctionSpec] = {}  # moto function name -> spec
        self.task_timeouts: dict[str, float] = {}  # stage -> smallest Task TimeoutSeconds
        self._per_fn_env: dict[str, dict] = {}
        self._env_lock = threading.Lock()
        self._lock = threading.Lock()
        self._import_lock = threading.Lock()  # slow imports must not block the attempt log
        self._handlers: dict[str, Any] = {}
        self._log_restore: list[tuple[Any, Any]] = []
        self._counts: dict[tuple, int] = {}
        self._containers = {stage: threading.Lock() for stage in ONE_CONTAINER_STAGES}
        # ``(spec, fn, event) -> result``: runs the handler elsewhere (yolo_sfn.local.workers,
        # raising an exception named as the errorType); None: in this process
        self.out_of_process: Any = None

    # --- setup -------------------------------------------------------------------------
    def bind(self, function_name: str, spec: FunctionSpec) -> None:
        self.functions[function_name] = spec

    @contextmanager
    def environment(self, envs: dict[str, dict[str, str]]) -> Iterator[list[str]]:
        """Set the functions' shared environment in ``os.environ``; yields notes."""
        common, per_fn = split_environment(envs)
        differing = sorted({k for env in per_fn.values() for k in env})
        # a name is never removed while threads run (a thread copying os.environ meanwhile
        # would fail on it): a function without one of the differing names sees it empty
        self._per_fn_env = {name: {k: str(env.get(k, "")) for k in differing}
                            for name, env in per_fn.items() if differing}
        saved = {k: os.environ.get(k) for k in (*common, *differing)}
        os.environ.update({k: str(v) for k, v in common.items()})
        os.environ.update({k: os.environ.get(k, "") for k in differing})
        notes = (
            [f"environment differs between functions for {differing}: those invokes run one at a "
             "time locally, and a function that does not set one of these sees it empty"]
            if differing
            else []
        )
        try:
            yield notes
        finally:
            set_environ(saved)

    @contextmanager
    def installed(self) -> Iterator[LambdaRouter]:
        router = self

        def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
            return router.invoke(self, event)

        fn_cls = importlib.import_module(LAMBDA_MODELS).LambdaFunction
        original = fn_cls._invoke_lambda
        # private hook: moto would run the function in Docker; the handler runs in-process
        fn_cls._invoke_lambda = _invoke_lambda
        try:
            yield self
        finally:
            fn_cls._invoke_lambda = original
            for handler, stream in reversed(self._log_restore):
                handler.setStream(stream)
            self._log_restore.clear()

    # --- handler loading ---------------------------------------------------------------
    def _handler(self, spec: FunctionSpec) -> Any:
        handler = self._handlers.get(spec.stage)
        if handler is not None:
            return handler
        with self._import_lock:
            if spec.stage not in self._handlers:
                try:
                    self._handlers[spec.stage] = load_handler(spec, self.log_stream,
                                                              self._log_restore)
                except Exception as e:
                    raise HandlerImportError(f"{spec.code_dir}: {type(e).__name__}: {e}") from e
            return self._handlers[spec.stage]

    # --- the invoke --------------------------------------------------------------------
    def reset_attempt_numbers(self) -> None:
        """Attempt numbers count per execution: the engine calls this before each start."""
        with self._lock:
            self._counts.clear()

    def _next_attempt(self, stage: str, images: tuple, batch: Any) -> int:
        with self._lock:
            key = (batch, stage, images)
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def _fault_for(self, stage: str, images: list[str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applies(stage, images):
                    fault._fired += 1
                    return fault
        return None

    def _record(self, stage, images, attempt, outcome, error_type, start, injected,
                fn: Any = None, result: Any = None, cpu_s: float | None = None) -> None:
        """``start``: ``(perf_counter, thread_time)`` when the invoke began; ``cpu_s``: the
        CPU seconds of the thread that ran the handler (None: it did not finish, and the
        invoke is billed its wall time, as Lambda bills a timed-out invoke its Timeout)."""
        failed = result.get("failed") if isinstance(result, dict) and "size" in result else None
        cpu_ms = None if cpu_s is None else round(cpu_s * 1000, 3)
        rec = Attempt(stage, images[0] if len(images) == 1 else None, attempt, outcome,
                      error_type, round((time.perf_counter() - start[0]) * 1000, 3), injected,
                      _int_or_none(getattr(fn, "memory_size", None)),
                      (getattr(fn, "architectures", None) or ["x86_64"])[0], tuple(images),
                      failed if isinstance(failed, int) and stage == "store" else None,
                      cpu_ms)
        with self._lock:
            self.attempts.append(rec)

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        spec = self.functions.get(fn.function_name)
        container = self._containers.get(spec.stage) if spec is not None else None
        if container is None:
            return self._invoke(spec, fn, event, {})
        # a holder past its function Timeout is hung (or abandoned by a Task timeout and still
        # running): Lambda would have stopped it, so stop waiting for it
        with taskclock.queued():
            held = container.acquire(timeout=float(fn.timeout) + 1.0)
        # a handler that outlives its Timeout keeps the container until it ends (AWS would
        # start a fresh one: the next invoke waits, queued, rather than share the model)
        handoff = {"release": container.release} if held else {}
        try:
            return self._invoke(spec, fn, event, handoff)
        finally:
            release = handoff.pop("release", None)
            if release is not None:
                release()

    def _invoke(self, spec: FunctionSpec | None, fn: Any, event: Any,
                handoff: dict) -> tuple[str, bool, str]:
        if spec is None:
            raise LocalEngineError(f"no local code bound to Lambda function {fn.function_name}")
        if isinstance(event, str):
            event = json.loads(event or "{}")
        image = tuple(images_of(event)) if spec.stage in IMAGE_STAGES else ()
        attempt = self._next_attempt(spec.stage, image, batch_of(event))
        fault = self._fault_for(spec.stage, list(image))
        start = (time.perf_counter(), time.thread_time())
        injected = fault.kind if fault else None
        if injected == "throttle":
            self._record(spec.stage, image, attempt, "throttled",
                         "Lambda.TooManyRequestsException", start, injected, fn, cpu_s=0.0)
            raise throttle_error()
        if injected == "timeout":
            payload = self._sleep_past_timeout(spec, fn)
            self._record(spec.stage, image, attempt, "timeout", "Sandbox.Timedout", start, injected,
                         fn)
            return json.dumps(payload), True, ""
        cpu = [0.0]
        try:
            result = self._call_within_timeout(spec, fn, event, injected, cpu, handoff)
            body = json.dumps(result)
        except FunctionTimedOut as err:
            self._record(spec.stage, image, attempt, "timeout", "Sandbox.Timedout", start,
                         injected, fn)
            return json.dumps({"errorType": "Sandbox.Timedout",
                               "errorMessage": str(err)}), True, ""
        except Exception as err:  # every handler error becomes a Lambda error payload
            payload = error_payload(err)
            if isinstance(err, TypeError) and "JSON serializable" in str(err):
                payload["errorType"] = "Runtime.MarshalError"
            elif isinstance(err, HandlerImportError):
                payload["errorType"] = "Runtime.ImportModuleError"  # as Lambda names it
            self._record(spec.stage, image, attempt, "error", payload["errorType"], start,
                         injected, fn, cpu_s=cpu[0])
            return json.dumps(payload), True, ""
        self._record(spec.stage, image, attempt, "ok", None, start, injected, fn, result,
                     cpu_s=cpu[0])
        return body, False, ""

    def _call_within_timeout(self, spec: FunctionSpec, fn: Any, event: Any,
                             injected: str | None, cpu: list[float], handoff: dict) -> Any:
        """``_call`` on a thread of its own, answered as Lambda answers: its result or error
        within the function's ``Timeout``, else ``FunctionTimedOut`` (Lambda stops the
        function there; a thread cannot be stopped, so the handler runs on, unrecorded, and
        the local engine notes say so; ``handoff["release"]``, the container, is then
        released by that thread when it ends). ``cpu[0]``: the handler thread's CPU seconds."""
        box: dict[str, Any] = {}
        done, lock = threading.Event(), threading.Lock()

        def run() -> None:
            t0 = time.thread_time()
            try:
                box["result"] = self._call(spec, fn, event, injected)
            except BaseException as e:  # re-raised in the invoking thread
                box["error"] = e
            finally:
                with lock:
                    box["cpu_s"] = time.thread_time() - t0
                    done.set()
                    release = box.get("release")
                if release is not None:
                    release()

        threading.Thread(target=run, name=f"lambda-{spec.stage}", daemon=True).start()
        timeout = float(fn.timeout)
        if not done.wait(timeout):
            with lock:
                if not done.is_set():
                    box["release"] = handoff.pop("release", None)
                    raise FunctionTimedOut(f"Task timed out after {timeout:.2f} seconds")
        cpu[0] = box["cpu_s"]
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _call(self, spec: FunctionSpec, fn: Any, event: Any, injected: str | None) -> Any:
        if injected == "s3_transient":
            raise TransientAwsError(f"injected transient S3 error in {spec.stage}")
        if injected == "crash":
            raise RuntimeError(f"injected crash in {spec.stage}")
        if self.out_of_process is not None:
            return self.out_of_process(spec, fn, event)
        handler = self._handler(spec)
        context = LambdaContext(fn.function_name, fn.memory_size, float(fn.timeout),
                                fn.function_arn)
        return self._run(handler, fn, event, context)

    def _run(self, handler: Any, fn: Any, event: Any, context: Any) -> Any:
        per_fn = self._per_fn_env.get(fn.function_name)
        if not per_fn:
            return handler(event, context)
        with self._env_lock:
            saved = {k: os.environ.get(k) for k in per_fn}
            os.environ.update(per_fn)
            try:
                return handler(event, context)
            finally:
                set_environ(saved)

    def _sleep_past_timeout(self, spec: FunctionSpec, fn: Any) -> dict:
        """Wait past the Task's TimeoutSeconds (or the function Timeout, whichever is first)."""
        limit = float(fn.timeout)
        task_limit = self.task_timeouts.get(spec.stage)
        if task_limit:
            limit = min(limit, task_limit)
        time.sleep(limit + 0.5)
        return {"errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {limit:.2f} seconds (injected)"}

    # --- reading the log -----------------------------------------------------------------
    def attempts_for(self, stage: str | None = None, image: str | None = None) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts
                    if (stage is None or a.stage == stage)
                    and (image is None or any(i == image or i.rsplit("/", 1)[-1] == image
                                              for i in a.images))]


def redirect_stdout_loggers(module: Any, stream: Any) -> list[tuple[Any, Any]]:
    """Point the module's loggers (stdlib or Powertools) that write to stdout at ``stream``,
    so handler logs never mix with the CLI's own output (``yolo-sfn run --json``).
    Returns ``(handler, old stream)`` pairs to restore."""
    import logging
    import sys

    changed = []
    for value in vars(module).values():
        logger = getattr(value, "_logger", value)
        if not isinstance(logger, logging.Logger):
            continue
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.__stdout__):
                changed.append((h, h.setStream(stream)))
    return changed


def load_handler(spec: FunctionSpec, log_stream: Any = None, restore: list | None = None) -> Any:
    """Import ``<CodeUri>/<module>.py`` once under a unique name and return its handler."""
    module_name, _, attr = spec.handler.rpartition(".")
    path = Path(spec.code_dir) / f"{module_name.replace('.', '/')}.py"
    if not path.is_file():
        raise LocalEngineError(f"{spec.logical_id}: handler file {path} does not exist")
    module = import_path(f"yolo_sfn_local_fn_{spec.stage}", path)
    if log_stream is not None:
        changed = redirect_stdout_loggers(module, log_stream)
        if restore is not None:
            restore.extend(changed)
    handler = getattr(module, attr, None)
    if handler is None:
        raise LocalEngineError(f"{path}: no function {attr}")
    return handler
