"""Fresh-process measurement of the infer stage: ``python -m yolo_sfn.bench.probe``.

What the Lambda infer stage does on a cold start, minus S3: import the runtime, load the model
from local disk, run the first inference on a preprocessed ``(1, h, w, 3)`` uint8 ``.npy``
input. Then ``--runs`` more inferences (inputs cycled), and the peak RSS of the whole process.

Prints one JSON object. Times are wall-clock (``time.time()``) so the parent can subtract the
moment it spawned this process (``--spawned-at``): that makes "cold load" include the Python
interpreter start and every import, measured from process start.
"""

from __future__ import annotations

import time

_T_MAIN = time.time()  # first line executed by this module (interpreter already up)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def _rss_mb() -> float:
    """Peak RSS of this process image in MiB: /proc/self/status VmHWM.

    Not ru_maxrss: on Linux that survives exec, so a child spawned by a large parent reports
    the parent's size (seen here: 1,272 MiB for a 34 MiB model).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m yolo_sfn.bench.probe")
    ap.add_argument("--model", required=True)
    ap.add_argument(
        "--input", action="append", required=True, help=".npy (1,h,w,3) uint8; repeatable"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--runs", type=int, default=0, help="inferences after the first (inputs cycled)"
    )
    ap.add_argument(
        "--with-boto3",
        action="store_true",
        help="also import boto3 and build an S3 client, as the Lambda handler does",
    )
    ap.add_argument("--spawned-at", type=float, default=None, help="parent's time.time() at spawn")
    args = ap.parse_args(argv)
    rss = {"interpreter": _rss_mb()}
    import numpy as np

    from yolo_sfn.core.runtime import RUNTIME, Model

    if args.with_boto3:
        import boto3

        boto3.client("s3", region_name="us-east-1")
    t_import = time.time()
    rss["import"] = _rss_mb()
    model = Model.load(args.model, threads=args.threads)
    t_load = time.time()
    rss["load"] = _rss_mb()
    inputs = [np.load(p) for p in args.input]
    t_inputs = time.time()
    heads = model.run(inputs[0])
    t_first = time.time()
    rss["first"] = _rss_mb()
    steady = []
    rss_track = []
    for i in range(args.runs):
        t = time.perf_counter()
        heads = model.run(inputs[(i + 1) % len(inputs)])
        steady.append(time.perf_counter() - t)
        rss_track.append(_rss_mb())
    out = {
        "runtime": RUNTIME,
        "threads": model.threads,
        "t_main": _T_MAIN,
        "t_import": t_import,
        "t_load": t_load,
        "t_first": t_first,
        "spawned_at": args.spawned_at,
        "import_s": t_import - _T_MAIN,
        "load_s": t_load - t_import,
        "first_infer_s": t_first - t_inputs,
        "steady_s": steady,
        "rss_mb": rss,
        "peak_rss_mb": _rss_mb(),
        "rss_after_each_mb": rss_track,
        "heads": [list(h.shape) for h in heads],
    }
    if args.spawned_at is not None:
        out["interpreter_start_s"] = _T_MAIN - args.spawned_at
        # spawn -> first result, minus the time spent reading the .npy inputs (not model work)
        out["cold_total_s"] = (t_first - args.spawned_at) - (t_inputs - t_load)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
