"""Task timeouts that do not count local queuing.

On AWS every concurrent Lambda invoke has a container of its own. Locally the Infer function's
invokes share this process's one loaded model, so they take turns (``LambdaRouter`` queues
them), and a batch waiting for another batch's inference must not run into its Task's
``TimeoutSeconds``.

moto's ``ExecutionState._evaluate_with_timeout`` creates a ``threading.Event``, starts the
state's work on a new ``Thread`` and waits on the event for ``TimeoutSeconds``. ``installed()``
gives that module an Event whose wait is extended by the time the state's thread spent queued
(``queued()``), and a Thread that knows the Event created just before it.
"""

from __future__ import annotations

import importlib
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXECUTE_STATE = "moto.stepfunctions.parser.asl.component.state.exec.execute_state"
_local = threading.local()


class QueueAwareEvent(threading.Event):
    """An Event whose timed wait does not count the time its state spent queued locally."""

    def __init__(self) -> None:
        super().__init__()
        self._queued_lock = threading.Lock()
        self._queued_s = 0.0
        self._queues = 0  # queues the state's thread is waiting in now
        self._since = 0.0
        _local.last_event = self

    def enter_queue(self) -> None:
        with self._queued_lock:
            if self._queues == 0:
                self._since = time.monotonic()
            self._queues += 1

    def leave_queue(self) -> None:
        with self._queued_lock:
            self._queues -= 1
            if self._queues == 0:
                self._queued_s += time.monotonic() - self._since

    def queued_s(self) -> tuple[float, bool]:
        """``(seconds queued so far, queued now)``."""
        with self._queued_lock:
            now = time.monotonic() - self._since if self._queues else 0.0
            return self._queued_s + now, bool(self._queues)

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        start = time.monotonic()
        while True:
            queued, queuing = self.queued_s()
            remaining = start + timeout + queued - time.monotonic()
            if remaining <= 0 and not queuing:
                return self.is_set()
            if super().wait(max(0.05, min(remaining, 0.25)) if queuing else remaining):
                return True


class StateThread(threading.Thread):
    """A Thread carrying the QueueAwareEvent its creator made just before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_clock = getattr(_local, "last_event", None)


@contextmanager
def queued() -> Iterator[None]:
    """The calling thread waits in the block for a local resource AWS would not share: that
    time does not count towards its state's TimeoutSeconds."""
    clock = getattr(threading.current_thread(), "task_clock", None)
    if clock is None:
        yield
        return
    clock.enter_queue()
    try:
        yield
    finally:
        clock.leave_queue()


@contextmanager
def installed() -> Iterator[None]:
    module = importlib.import_module(EXECUTE_STATE)
    shim = types.SimpleNamespace(**{k: getattr(threading, k) for k in dir(threading)
                                    if not k.startswith("__")})
    shim.Event = QueueAwareEvent
    original_threading, original_thread = module.threading, module.Thread
    # private hook: _evaluate_with_timeout waits on threading.Event() for TimeoutSeconds
    module.threading = shim
    # private hook: ... and runs the state on Thread(...), the thread that invokes the Lambda
    module.Thread = StateThread
    try:
        yield
    finally:
        module.threading, module.Thread = original_threading, original_thread
