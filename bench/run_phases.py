"""Where the time of one ``yolo-sfn run`` goes: wall and process CPU seconds per phase.

    python bench/run_phases.py IMAGES_DIR [--out DIR] [-- extra yolo-sfn run options]

Runs ``yolo-sfn run IMAGES_DIR --out DIR`` in this process with timers around its phases
(engine start-up, deploy, model upload, image upload, the execution, results + annotated
copies, the report) and prints, per phase, its start and end (seconds since this script
started), its wall seconds and the process CPU seconds spent meanwhile (all threads: a CPU
figure near 2x the wall time means both cores of this machine were busy). A profile, not a
benchmark: compare commits with ``bench/run_vs_commit.py``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import tempfile
import time

T0 = time.perf_counter()

PHASES = (  # (module, class or None, function)
    ("yolo_sfn.local.runner", None, "inputs_from_paths"),
    ("yolo_sfn.commands.run", None, "check_model"),
    ("yolo_sfn.local.engine", "LocalEngine", "__enter__"),
    ("yolo_sfn.local.runner", None, "_deploy"),
    ("yolo_sfn.local.engine", "LocalEngine", "upload_model"),
    ("yolo_sfn.local.runner", None, "_upload"),
    ("yolo_sfn.local.engine", "LocalEngine", "execute"),
    ("yolo_sfn.local.runner", None, "write_outputs"),
    ("yolo_sfn.local.runner", None, "_write_results"),
    ("yolo_sfn.local.runner", None, "_write_report"),
)


def timed(owner: object, name: str, label: str, marks: list) -> None:
    """Replace ``owner.name`` with a wrapper that appends ``(label, start, end, cpu_s)``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            marks.append((label, start - T0, time.perf_counter() - T0,
                          time.process_time() - cpu))

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images")
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    ap.add_argument("extra", nargs="*", help="more yolo-sfn run options, after --")
    args = ap.parse_args(argv)
    marks: list[tuple[str, float, float, float]] = []
    from yolo_sfn.cli import main as cli_main

    for module, cls, name in PHASES:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        timed(owner, name, f"{cls or module.rsplit('.', 1)[-1]}.{name}", marks)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or f"{tmp}/out"
        start, cpu = time.perf_counter(), time.process_time()
        try:
            code = cli_main(["run", args.images, "--out", out, *args.extra])
        except SystemExit as e:
            code = e.code
        marks.append(("whole command", start - T0, time.perf_counter() - T0,
                      time.process_time() - cpu))
    print(f"{'phase':28s} {'start':>6s} {'end':>6s} {'wall s':>7s} {'cpu s':>6s}",
          file=sys.stderr)
    for label, a, b, c in sorted(marks, key=lambda m: m[1]):
        print(f"{label:28s} {a:6.2f} {b:6.2f} {b - a:7.2f} {c:6.2f}", file=sys.stderr)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
