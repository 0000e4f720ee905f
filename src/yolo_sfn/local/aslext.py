"""Distributed Map features moto 5.2.5's ASL interpreter cannot parse, run around it.

moto's ANTLR grammar rejects ``ItemBatcher``, ``ProcessorConfig.ExecutionType: EXPRESS`` and an
integer ``ToleratedFailurePercentage``, and its Distributed Map turns a failed child into a
``null`` output instead of failing the Map. This module:

1. wraps moto's parser: ``split(asl)`` takes those fields out of every DISTRIBUTED Map of a copy
   of the definition (``MapFeatures`` per Map, keyed by its state path), moto parses the copy,
   and the features are attached to the Map components it built. The stored definition (what
   ``describe_state_machine`` returns) is the text as written;
2. replaces the Distributed Map run: the ItemSelector is applied to each item, the selected
   items are cut into batches (``make_batches``) whose child input is
   ``{"BatchInput": ..., "Items": [...]}``, children run on ``MaxConcurrency`` threads, and
   failed items are counted against the tolerated count/percentage (``Tolerance``): past it the
   Map fails with ``States.ExceedToleratedFailureThreshold``. Map run item counts count items.

EXPRESS children run like STANDARD ones here (same interpreter); each child's duration and
state transitions are recorded (``ChildRun``) for the cost estimate.
"""

from __future__ import annotations

import copy
import importlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from yolo_sfn.errors import LocalEngineError
from yolo_sfn.local.invoke import images_of

PARSER = "moto.stepfunctions.parser.asl.parse.asl_parser"
STATE_MAP = "moto.stepfunctions.parser.asl.component.state.exec.state_map"
ITERATION = f"{STATE_MAP}.iteration.distributed_iteration_component"
WORKER = f"{STATE_MAP}.iteration.itemprocessor.distributed_item_processor_worker"
PROCESSOR = f"{STATE_MAP}.iteration.itemprocessor.distributed_item_processor"
EXT_ATTR = "yolo_sfn_map_features"

BATCHER_FIELDS = ("MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch",
                  "MaxInputBytesPerBatchPath", "BatchInput")
TOLERANCE_FIELDS = ("ToleratedFailureCount", "ToleratedFailureCountPath",
                    "ToleratedFailurePercentage", "ToleratedFailurePercentagePath")
EXCEEDED = "States.ExceedToleratedFailureThreshold"


# --- reading the definition --------------------------------------------------------------
@dataclass
class MapFeatures:
    """What one DISTRIBUTED Map asks for that moto's parser does not take."""

    execution_type: str = "STANDARD"
    batcher: dict | None = None  # the ItemBatcher object as written
    tolerance: dict = field(default_factory=dict)  # ToleratedFailure* fields as written


def _state_lists(states: dict, path: tuple) -> Iterator[tuple[tuple, dict]]:
    for name, state in (states or {}).items():
        if not isinstance(state, dict):
            continue
        here = (*path, name)
        yield here, state
        proc = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(proc, dict):
            yield from _state_lists(proc.get("States"), here)
        for i, branch in enumerate(state.get("Branches") or []):
            if isinstance(branch, dict):
                yield from _state_lists(branch.get("States"), (*here, i))


def split(asl: dict) -> tuple[dict, dict[tuple, MapFeatures]]:
    """``(copy without the fields, {state path: MapFeatures})`` for every DISTRIBUTED Map."""
    out = copy.deepcopy(asl)
    found: dict[tuple, MapFeatures] = {}
    for path, state in _state_lists(out.get("States"), ()):
        proc = state.get("ItemProcessor")
        config = (proc or {}).get("ProcessorConfig") or {}
        if state.get("Type") != "Map" or config.get("Mode") != "DISTRIBUTED":
            continue
        feats = MapFeatures(execution_type=str(config.get("ExecutionType", "STANDARD")))
        if feats.execution_type == "EXPRESS":
            config["ExecutionType"] = "STANDARD"  # moto's grammar knows only STANDARD
        if "ItemBatcher" in state:
            feats.batcher = state.pop("ItemBatcher")
        feats.tolerance = {k: state.pop(k) for k in TOLERANCE_FIELDS if k in state}
        found[path] = feats
    return out, found


def _attach(states: dict, found: dict[tuple, MapFeatures], path: tuple = ()) -> None:
    """Put each Map's features on the iteration component moto built for it."""
    for name, state in states.items():
        here = (*path, name)
        component = getattr(state, "iteration_component", None)
        if component is not None:
            if here in found:
                setattr(component, EXT_ATTR, found[here])
            _attach(component._states.states, found, here)  # the Map's own States
        branches = getattr(state, "branches", None)
        for i, sub in enumerate(getattr(branches, "programs", None) or []):
            _attach(sub.states.states, found, (*here, i))


def _parse_with_features(original: Any) -> Any:
    def parse(definition: str) -> Any:
        try:
            asl = json.loads(definition)
        except (TypeError, ValueError):
            return original(definition)  # moto's own syntax error
        if not isinstance(asl, dict):
            return original(definition)
        stripped, found = split(asl)
        if not found:
            return original(definition)
        program, tree = original(json.dumps(stripped))
        _attach(program.states.states, found)
        return program, tree

    return staticmethod(parse)


# --- batching and tolerance (pure) --------------------------------------------------------
def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def make_batches(items: list, batch_input: Any, max_items: int | None,
                 max_bytes: int | None) -> list[dict]:
    """Cut ``items`` in order into ``{"BatchInput", "Items"}`` envelopes.

    A batch holds at most ``max_items`` items and, serialised, at most ``max_bytes`` bytes
    (the whole envelope). An item that alone exceeds ``max_bytes`` raises ``ValueError``.
    """
    envelope = {"BatchInput": batch_input} if batch_input is not None else {}
    base = _size({**envelope, "Items": []})
    batches: list[dict] = []
    current: list = []
    used = base
    for item in items:
        size = _size(item) + (1 if current else 0)  # the comma before it
        if max_bytes is not None and base + _size(item) > max_bytes:
            raise ValueError(f"an item of {_size(item)} bytes does not fit in "
                             f"MaxInputBytesPerBatch {max_bytes}")
        full = (max_items is not None and len(current) >= max_items) or (
            max_bytes is not None and used + size > max_bytes)
        if current and full:
            batches.append({**envelope, "Items": current})
            current, used, size = [], base, _size(item)
        current.append(item)
        used += size
    if current:
        batches.append({**envelope, "Items": current})
    return batches


@dataclass
class Tolerance:
    """The Map Run's failure threshold: fails once failed items exceed the count or the
    percentage of all items (neither set: no failed item is tolerated)."""

    total: int
    count: int | None = None
    percentage: float | None = None
    failed: int = 0
    broken: bool = False  # the threshold was exceeded: the Map Run has failed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_failure(self, n: int) -> str:
        """``n`` items of one child failed: ``"exceeded"`` when this crosses the threshold,
        ``"tolerated"`` under it, ``"aborted"`` when the Map Run had already failed (AWS
        aborts the children still running then)."""
        with self._lock:
            if self.broken:
                return "aborted"
            self.failed += n
            self.broken = self.exceeded()
            return "exceeded" if self.broken else "tolerated"

    def exceeded(self) -> bool:
        if self.failed == 0:
            return False
        if self.count is None and self.percentage is None:
            return True
        if self.count is not None and self.failed > self.count:
            return True
        return (self.percentage is not None and self.total > 0
                and self.failed * 100.0 > self.percentage * self.total)


# --- evaluating the fields against the Map's input ---------------------------------------
def _path_value(path: str, data: Any, context: dict) -> Any:
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    if path.startswith("$$"):
        return extract_json(path[1:], context)
    return extract_json(path, data)


def resolve_template(template: Any, data: Any, context: dict) -> Any:
    """A payload template (``"key.$": "$.path"``) resolved as ASL Parameters are."""
    if isinstance(template, list):
        return [resolve_template(v, data, context) for v in template]
    if not isinstance(template, dict):
        return template
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if not isinstance(value, str) or not value.startswith("$"):
                raise LocalEngineError(f"BatchInput {key}: only JSONPaths are supported "
                                       f"locally (not {value!r})")
            out[key[:-2]] = _path_value(value, data, context)
        else:
            out[key] = resolve_template(value, data, context)
    return out


def _number(fields: dict, name: str, data: Any, context: dict, kind: type) -> Any:
    """``fields[name]`` or the value at ``fields[name + "Path"]``, as ``kind`` (None: unset)."""
    if name in fields:
        value = fields[name]
    elif f"{name}Path" in fields:
        value = _path_value(fields[f"{name}Path"], data, context)
    else:
        return None
    bad = ValueError(f"{name}: {value!r} is not a valid {kind.__name__} >= 0")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise bad from None
    if number < 0 or (kind is int and float(value) != number):
        raise bad
    return number


# --- the Map run ---------------------------------------------------------------------------
@dataclass
class ChildRun:
    """One child execution of a Distributed Map, as billed."""

    execution_arn: str  # the parent execution
    execution_type: str
    items: int
    duration_s: float  # local wall time (children running at once wait for each other)
    transitions: int
    status: str
    images: tuple[str, ...] = ()  # the images its input carries (invoke.images_of)


class _Ledger:
    """Every child run of every Distributed Map, by parent execution ARN."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, list[ChildRun]] = {}

    def add(self, run: ChildRun) -> None:
        with self._lock:
            self._runs.setdefault(run.execution_arn, []).append(run)

    def pop(self, execution_arn: str) -> list[ChildRun]:
        with self._lock:
            return self._runs.pop(execution_arn, [])


LEDGER = _Ledger()


def _counting_events() -> Any:
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    class CountingEvents(EventManager):
        """A child's event history, counted by type instead of kept."""

        def __init__(self) -> None:
            super().__init__()
            self.counts: dict[str, int] = {}

        # private hook: the one place every event passes; counting replaces keeping it
        def _publish_history_event(self, event_id, source_event_id, event_type, timestamp,
                                   event_details) -> None:
            key = str(event_type)
            self.counts[key] = self.counts.get(key, 0) + 1

    return CountingEvents()


def transitions_of(counts: dict[str, int]) -> int:
    """State transitions billed for an event history: every state entered, plus every retry
    (a Task's second and later scheduled attempts)."""
    entered = sum(n for k, n in counts.items() if k.endswith("StateEntered"))
    task_entered = counts.get("TaskStateEntered", 0)
    scheduled = sum(n for k, n in counts.items()
                    if k in ("TaskScheduled", "LambdaFunctionScheduled"))
    return entered + max(0, scheduled - task_entered)


def _fail(env: Any, error: str, cause: str) -> Exception:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    names = {EXCEEDED: StatesErrorNameType.StatesExceedToleratedFailureThreshold,
             "States.Runtime": StatesErrorNameType.StatesRuntime}
    name = StatesErrorName(typ=names[error]) if error in names else CustomErrorName(error)
    return FailureEventException(failure_event=FailureEvent(
        env=env, error_name=name, event_type=HistoryEventType.ExecutionFailed,
        event_details=EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(
            error=error, cause=cause))))


class _MapRun:
    """One Distributed Map run: jobs (items or batches), their sizes, the threshold."""

    def __init__(self, feats: MapFeatures, record: Any, sizes: list[int],
                 tolerance: Tolerance) -> None:
        self.feats = feats
        self.record = record
        self.sizes = sizes
        self.tolerance = tolerance


def _worker_class() -> type:
    base = importlib.import_module(WORKER).DistributedItemProcessorWorker

    class Worker(base):
        """moto's distributed worker with items counted per batch and failures thresholded."""

        run: _MapRun

        # private hook: moto's _eval_job swallows a failed child as a null output
        def _eval_job(self, env: Any, job: Any) -> None:
            from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import (
                EvalTimeoutError,
            )
            from moto.stepfunctions.parser.asl.eval.program_state import (
                ProgramError,
                ProgramStopped,
            )
            from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

            run, n = self.run, self.run.sizes[job.job_index]
            items, execs = run.record.item_counter, run.record.execution_counter
            for counter in (items, execs):
                counter.pending.offset(-(n if counter is items else 1))
                counter.running.count(n if counter is items else 1)
            events = env.event_manager = _counting_events()  # the child's own history
            started, outcome, output = time.perf_counter(), "failed", None
            try:
                env.states.context_object.context_object_data["Map"] = MapData(
                    Item=ItemData(Index=job.job_index, Value=job.job_input))
                env.states.reset(job.job_input)
                env.stack.append(env.states.get_input())
                self._eval_input(env_frame=env)
                job.job_program.eval(env)
                state = env.program_state()
                if isinstance(state, ProgramStopped):
                    outcome = "aborted"
                elif not isinstance(state, ProgramError):
                    outcome, output = "succeeded", env.states.get_input()
            except EvalTimeoutError:
                outcome = "timed_out"
            except Exception:  # a crash inside the child is that child's failure
                outcome = "failed"
            verdict = run.tolerance.record_failure(n) if outcome in ("failed", "timed_out") \
                else None
            if verdict == "aborted":
                outcome = "aborted"
            for counter in (items, execs):
                counter.running.offset(-(n if counter is items else 1))
                getattr(counter, outcome).count(n if counter is items else 1)
                if outcome == "succeeded":
                    counter.results_written.count(n if counter is items else 1)
            LEDGER.add(ChildRun(run.record.execution_arn, run.feats.execution_type, n,
                                time.perf_counter() - started, transitions_of(events.counts),
                                outcome, tuple(images_of(job.job_input))))
            if verdict == "exceeded":
                output = _fail(env, EXCEEDED,
                               f"The specified tolerated failure threshold was exceeded: "
                               f"{run.tolerance.failed} of {run.tolerance.total} items failed")
            job.job_output = output

    return Worker


_WORKER: type | None = None


def _map_run(original: Any) -> Any:
    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        processor = importlib.import_module(PROCESSOR).DistributedItemProcessor
        if not isinstance(self, processor):
            return original(self, env, eval_input)  # the legacy Iterator field: moto's own
        feats: MapFeatures = getattr(self, EXT_ATTR, None) or MapFeatures()
        items: list = env.stack.pop()
        map_input = env.stack[-1] if env.stack else env.states.get_input()
        context = env.states.context_object.context_object_data
        record = eval_input.map_run_record
        try:
            tolerance = Tolerance(
                total=len(items),
                count=_number(feats.tolerance, "ToleratedFailureCount", map_input, context, int),
                percentage=_number(feats.tolerance, "ToleratedFailurePercentage", map_input,
                                   context, float))
            if tolerance.percentage is not None and tolerance.percentage > 100:
                raise ValueError("ToleratedFailurePercentage must be between 0 and 100")
            jobs, sizes, selector = _jobs(env, eval_input, feats, items, map_input, context)
        except (ValueError, LocalEngineError) as e:
            raise _fail(env, "States.Runtime", str(e)) from None
        record.tolerated_failure_count = tolerance.count or 0
        record.tolerated_failure_percentage = tolerance.percentage or 0.0
        record.item_counter.total.count(len(items))
        record.item_counter.pending.count(len(items))
        record.execution_counter.total.count(len(jobs))
        record.execution_counter.pending.count(len(jobs))
        _run_jobs(self, env, eval_input, _MapRun(feats, record, sizes, tolerance), jobs,
                  selector)

    return map_run


def _jobs(env: Any, eval_input: Any, feats: MapFeatures, items: list, map_input: Any,
          context: dict) -> tuple[list, list[int], Any]:
    """``(job inputs, items per job, selector left to the worker)``."""
    selector = eval_input.item_selector or eval_input.parameters
    if feats.batcher is None:
        return items, [1] * len(items), selector
    b = feats.batcher
    max_items = _number(b, "MaxItemsPerBatch", map_input, context, int)
    max_bytes = _number(b, "MaxInputBytesPerBatch", map_input, context, int)
    if not max_items and not max_bytes:
        raise ValueError("ItemBatcher needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch"
                         "(Path) above 0")
    batch_input = resolve_template(b["BatchInput"], map_input, context) \
        if "BatchInput" in b else None
    selected = [_select(env, selector, map_input, i, v) for i, v in enumerate(items)] \
        if selector else items
    batches = make_batches(selected, batch_input, max_items or None, max_bytes or None)
    return batches, [len(b["Items"]) for b in batches], None


def _select(env: Any, selector: Any, map_input: Any, index: int, value: Any) -> Any:
    """The ItemSelector applied to one item, as moto's worker applies it (before batching)."""
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    frame = env.open_inner_frame()
    try:
        frame.states.context_object.context_object_data["Map"] = MapData(
            Item=ItemData(Index=index, Value=value))
        frame.states.reset(input_value=map_input)
        frame.stack.append(map_input)
        selector.eval(frame)
        return frame.stack.pop()
    finally:
        env.delete_frame(frame)


def _run_jobs(component: Any, env: Any, eval_input: Any, run: _MapRun, jobs: list,
              selector: Any) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.job import (
        JobPool,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.max_concurrency import (
        DEFAULT_MAX_CONCURRENCY_VALUE,
    )

    global _WORKER
    if _WORKER is None:
        _WORKER = _worker_class()
    pool = JobPool(job_program=component._get_iteration_program(), job_inputs=jobs)
    limit = run.record.max_concurrency
    workers = len(jobs) if limit == DEFAULT_MAX_CONCURRENCY_VALUE else min(limit, len(jobs))
    threads = []
    for _ in range(workers):
        worker = _WORKER(work_name=eval_input.state_name, job_pool=pool, env=env,
                         item_reader=eval_input.item_reader, parameters=None,
                         item_selector=selector, map_run_record=run.record)
        worker.run = run
        thread = threading.Thread(target=worker.eval, daemon=True, name="yolo-sfn-map")
        thread.start()
        threads.append(thread)
    pool.await_jobs()
    error = pool.get_worker_exception()
    if error is not None:
        raise error
    env.stack.append([job.job_output for job in pool.get_closed_jobs()])


@contextmanager
def installed() -> Iterator[None]:
    """Install the parser wrapper and the Distributed Map run for the block."""
    parser_cls = importlib.import_module(PARSER).AmazonStateLanguageParser
    iteration_cls = importlib.import_module(ITERATION).DistributedIterationComponent
    original_parse = parser_cls.__dict__["parse"].__func__
    original_run = iteration_cls._map_run
    # private hook: the only entry of moto's parser (create_state_machine and each execution)
    parser_cls.parse = _parse_with_features(original_parse)
    # private hook: moto's Distributed Map run, replaced to batch and threshold failures
    iteration_cls._map_run = _map_run(original_run)
    try:
        yield
    finally:
        parser_cls.parse = staticmethod(original_parse)
        iteration_cls._map_run = original_run
