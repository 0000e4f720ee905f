"""Hypothesis budgets for the fuzz suite, applied per test (never as the global default).

``HYPOTHESIS_PROFILE=long`` (what ``tools/fuzz.py`` sets) raises the budget for manual runs
and explores randomly, with the example database under ``.cache/`` (git-ignored) so a failure
found by a long run replays first in the next one. Anything else is the CI budget:
derandomised, so CI runs the same examples every time and its result is reproducible.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
BUDGETS = {"ci": 200, "long": int(os.environ.get("FUZZ_EXAMPLES", "20000"))}
DATABASE = DirectoryBasedExampleDatabase(str(ROOT / ".cache" / "hypothesis"))


# Also registered by name (not loaded: other suites keep Hypothesis' defaults), for
# ``pytest --hypothesis-profile=yolo-sfn-long`` on any hypothesis test.
settings.register_profile("yolo-sfn-ci", max_examples=BUDGETS["ci"], deadline=None,
                          derandomize=True, database=None)
settings.register_profile("yolo-sfn-long", max_examples=BUDGETS["long"], deadline=None,
                          database=DATABASE)


def fuzz_settings(examples: int | None = None) -> settings:
    """Settings for one fuzz test: ``examples`` is its CI budget (default 200)."""
    ci = BUDGETS["ci"] if examples is None else examples
    n = BUDGETS["long"] if PROFILE == "long" else ci
    long = PROFILE == "long"
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=not long,
        database=DATABASE if long else None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(Exception):
    """One example ran past its time limit."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise Hang(f"example still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
