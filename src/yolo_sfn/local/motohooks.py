"""The moto 5.2.5 internals the local runner patches, checked in one place.

Every hook below touches a private moto attribute. ``check_moto()`` verifies the pinned
version and that each attribute still exists with the expected shape, and raises
``LocalEngineError`` naming what moved, so an upgrade fails loudly instead of silently
running something else.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from yolo_sfn.errors import LocalEngineError

MOTO_VERSION = "5.2.5"

LAMBDA_MODELS = "moto.awslambda.models"
S3_MODELS = "moto.s3.models"
RETRIER = "moto.stepfunctions.parser.asl.component.common.retry.retrier_decl"
SFN_MODELS = "moto.stepfunctions.models"
SFN_PARSER_MODELS = "moto.stepfunctions.parser.models"
PARSER_PACKAGE = "moto.stepfunctions.parser"
JSONPATH_USERS = (  # modules that call jsonpath_ng's parse() on every evaluation
    "moto.stepfunctions.parser.asl.utils.json_path",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
)


def _require(module: str, attr: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise LocalEngineError(f"moto internals moved: cannot import {module} ({e})") from e
    if not hasattr(mod, attr):
        raise LocalEngineError(f"moto internals moved: {module}.{attr} is gone")
    return getattr(mod, attr)


def check_moto() -> None:
    """Fail loudly unless moto==5.2.5 with every internal we patch in place."""
    try:
        import moto
    except ImportError as e:
        raise LocalEngineError(
            "the local runner needs moto: pip install 'yolo-sfn[local]'"
        ) from e
    if moto.__version__ != MOTO_VERSION:
        raise LocalEngineError(
            f"the local runner is pinned to moto=={MOTO_VERSION} (it patches moto internals); "
            f"found moto {moto.__version__}"
        )
    fn_cls = _require(LAMBDA_MODELS, "LambdaFunction")
    invoke = getattr(fn_cls, "_invoke_lambda", None)
    if invoke is None or list(inspect.signature(invoke).parameters) != ["self", "event"]:
        raise LocalEngineError("moto internals moved: LambdaFunction._invoke_lambda(self, event)")
    _require(LAMBDA_MODELS, "lambda_backends")
    retrier_time = _require(RETRIER, "time")
    if not hasattr(retrier_time, "sleep"):
        raise LocalEngineError(f"moto internals moved: {RETRIER}.time is not the time module")
    for module in JSONPATH_USERS:
        _require(module, "parse")
    _require(SFN_MODELS, "stepfunctions_backends")
    _require(SFN_PARSER_MODELS, "stepfunctions_parser_backends")
    _require("moto.core.exceptions", "JsonRESTError")
    stubber = _require("moto.core.botocore_stubber", "BotocoreStubber")
    if list(inspect.signature(stubber.__call__).parameters)[:3] != ["self", "event_name",
                                                                     "request"]:
        raise LocalEngineError("moto internals moved: BotocoreStubber.__call__(self, event_name, "
                               "request, ...)")
    _check_s3_backend()
    _check_map_internals()


def _check_map_internals() -> None:
    """What ``yolo_sfn.local.aslext`` relies on (parser entry, Distributed Map run, worker)."""
    state_map = "moto.stepfunctions.parser.asl.component.state.exec.state_map"
    parser_cls = _require("moto.stepfunctions.parser.asl.parse.asl_parser",
                          "AmazonStateLanguageParser")
    if not isinstance(parser_cls.__dict__.get("parse"), staticmethod):
        raise LocalEngineError("moto internals moved: AmazonStateLanguageParser.parse is not a "
                               "staticmethod")
    iteration = _require(f"{state_map}.iteration.distributed_iteration_component",
                         "DistributedIterationComponent")
    run = getattr(iteration, "_map_run", None)
    if run is None or list(inspect.signature(run).parameters) != ["self", "env", "eval_input"]:
        raise LocalEngineError("moto internals moved: DistributedIterationComponent._map_run"
                               "(self, env, eval_input)")
    worker = _require(f"{state_map}.iteration.itemprocessor.distributed_item_processor_worker",
                      "DistributedItemProcessorWorker")
    for name in ("_eval_job", "_eval_input", "_eval_pool"):
        if not hasattr(worker, name):
            raise LocalEngineError(f"moto internals moved: DistributedItemProcessorWorker.{name}")
    _require(f"{state_map}.iteration.job", "JobPool")
    execute_state = "moto.stepfunctions.parser.asl.component.state.exec.execute_state"
    from yolo_sfn.local import taskclock  # an engine already inside has put these in

    if getattr(_require(execute_state, "threading"), "Event", None) not in (
            threading.Event, taskclock.QueueAwareEvent) or _require(
            execute_state, "Thread") not in (threading.Thread, taskclock.StateThread):
        raise LocalEngineError(f"moto internals moved: {execute_state} no longer waits on "
                               "threading.Event / threading.Thread")
    source = inspect.getsource(_require(execute_state, "ExecutionState")._evaluate_with_timeout)
    if "threading.Event()" not in source or "Thread(" not in source:
        raise LocalEngineError("moto internals moved: ExecutionState._evaluate_with_timeout")
    _require("moto.stepfunctions.parser.asl.eval.event.event_manager", "EventManager")
    _require("moto.stepfunctions.parser.asl.utils.json_path", "extract_json")


def _check_s3_backend() -> None:
    """What ``yolo_sfn.local.spool`` relies on: FakeKey's body buffer from this module's
    ``tempfile.SpooledTemporaryFile``."""
    _require(S3_MODELS, "s3_backends")
    if not callable(getattr(_require(S3_MODELS, "tempfile"), "SpooledTemporaryFile", None)):
        raise LocalEngineError(f"moto internals moved: {S3_MODELS}.tempfile is not the module")
    key_cls = _require(S3_MODELS, "FakeKey")
    for attr in ("value", "etag", "dispose"):
        if not hasattr(key_cls, attr):
            raise LocalEngineError(f"moto internals moved: FakeKey.{attr} is gone")
    source = inspect.getsource(key_cls.__init__)
    if "tempfile.SpooledTemporaryFile(" not in source:
        raise LocalEngineError("moto internals moved: FakeKey no longer buffers its body in "
                               "tempfile.SpooledTemporaryFile")


@contextmanager
def patched(module: str, attr: str, value: Any) -> Iterator[Any]:
    """Replace ``module.attr`` for the duration of the block; yields the original."""
    mod = importlib.import_module(module)
    original = getattr(mod, attr)
    setattr(mod, attr, value)
    try:
        yield original
    finally:
        setattr(mod, attr, original)


@contextmanager
def cached_jsonpath_parsing() -> Iterator[None]:
    """Memoise JSONPath parsing in moto's interpreter.

    moto re-parses every JSONPath string (building a ply parser each time) at every state;
    parsed expressions are immutable, so one parse per distinct path string is enough.
    """
    import functools

    with ExitStack() as stack:
        for module in JSONPATH_USERS:
            original = _require(module, "parse")
            stack.enter_context(patched(module, "parse", functools.lru_cache(maxsize=4096)(
                original)))
        yield


# --- retry sleeps ------------------------------------------------------------------------
class RecordingClock:
    """Stands in for ``time`` inside moto's retrier: records retry waits, sleeps a fraction."""

    def __init__(self, real_time: Any, scale: float) -> None:
        self._time = real_time
        self.scale = scale
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(float(seconds))
        if self.scale > 0:
            self._time.sleep(seconds * self.scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._time, name)


@contextmanager
def retry_clock(scale: float) -> Iterator[RecordingClock]:
    """Record every ASL Retry wait; ``scale`` 1.0 sleeps for real, 0.0 not at all."""
    import time as real_time

    clock = RecordingClock(real_time, scale)
    with patched(RETRIER, "time", clock):
        yield clock


@contextmanager
def executing_cloudformation_state_machines() -> Iterator[None]:
    """Make moto's CloudFormation create state machines in the executing (parser) backend."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    with patched(SFN_MODELS, "stepfunctions_backends", stepfunctions_parser_backends):
        yield


@contextmanager
def quiet_interpreter_logs() -> Iterator[None]:
    """moto's ASL interpreter logs whole parse trees on every caught error; keep them out."""
    import logging

    logger = logging.getLogger(PARSER_PACKAGE)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
