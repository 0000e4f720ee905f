"""yolo_sfn.local.invoke.CpuGate: Infer alone while inference is heavy, otherwise no gate;
never a wait past max_wait_s (ordering is checked with events, not with timings)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("moto")

from yolo_sfn.local.invoke import CpuGate


def _hold(ctx, entered: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        with ctx:
            entered.set()
            release.wait(10)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _closed(max_wait_s: float) -> CpuGate:
    """A gate that three heavy Infer calls have closed."""
    gate = CpuGate(heavy_ms=100, max_wait_s=max_wait_s)
    for _ in range(3):
        gate.record(500.0)
    assert gate.closed
    return gate


def test_open_until_the_median_infer_call_is_heavy():
    gate = CpuGate(heavy_ms=100)
    assert not gate.closed
    for ms in (900.0, 20.0, 30.0):  # a slow first call (model load) does not close it
        gate.record(ms)
    assert not gate.closed
    for ms in (300.0, 310.0, 305.0):
        gate.record(ms)
    assert gate.closed  # median of the last 6: heavy
    for ms in (25.0,) * 8:
        gate.record(ms)
    assert not gate.closed  # only the recent calls count


def test_closed_gate_runs_infer_alone():
    gate = _closed(max_wait_s=30)
    shared_in, shared_go = threading.Event(), threading.Event()
    holder = _hold(gate.shared(), shared_in, shared_go)
    assert shared_in.wait(5)
    excl_in, excl_go = threading.Event(), threading.Event()
    infer = _hold(gate.exclusive(), excl_in, excl_go)
    assert not excl_in.wait(0.3)  # a stage of another image is running: Infer waits
    late_in, late_go = threading.Event(), threading.Event()
    late = _hold(gate.shared(), late_in, late_go)
    assert not late_in.wait(0.3)  # Infer is waiting: new stages queue behind it
    shared_go.set()
    assert excl_in.wait(5) and not late_in.is_set()
    excl_go.set()
    assert late_in.wait(5)
    late_go.set()
    for t in (holder, infer, late):
        t.join(5)


def test_open_gate_lets_infer_calls_overlap():
    gate = CpuGate(heavy_ms=100)
    in1, go1 = threading.Event(), threading.Event()
    t1 = _hold(gate.exclusive(), in1, go1)
    in2, go2 = threading.Event(), threading.Event()
    t2 = _hold(gate.exclusive(), in2, go2)
    assert in1.wait(5) and in2.wait(5)
    go1.set()
    go2.set()
    for t in (t1, t2):
        t.join(5)
    assert gate._exclusive == 0 and gate._sharing == 0


def test_a_hung_infer_opens_the_gate_for_good():
    """A call abandoned by a Task timeout keeps running: after one wait of max_wait_s the
    gate stops gating, so no later call waits on it."""
    gate = _closed(max_wait_s=0.05)
    hung_in, never = threading.Event(), threading.Event()
    hung = _hold(gate.exclusive(), hung_in, never)
    assert hung_in.wait(5)
    done = threading.Event()

    def stage() -> None:
        with gate.shared():
            done.set()

    waiter = threading.Thread(target=stage, daemon=True)
    waiter.start()
    assert done.wait(5)
    assert gate.broken and not gate.closed
    second_in, second_go = threading.Event(), threading.Event()
    second = _hold(gate.exclusive(), second_in, second_go)
    assert second_in.wait(5) and gate._exclusive == 2  # counted, not a flag the first clears
    never.set()
    hung.join(5)
    assert gate._exclusive == 1
    second_go.set()
    for t in (second, waiter):
        t.join(5)
    assert gate._exclusive == 0 and gate._sharing == 0
