"""numpy float32 matmul GFLOP/s in a fresh process; prints one JSON line.

Run by the bench scripts with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from *this
process's* environment only (they pick a slower sgemm kernel on this machine) and
OPENBLAS_NUM_THREADS set to the thread count under test. The JSON says which OpenBLAS kernel
and thread count actually ran.
"""

from __future__ import annotations

import argparse
import json
import sys

from yolo_sfn.bench.machine import openblas_info, sgemm_gflops


def serve(n: int) -> int:
    """Print the OpenBLAS info, then one GFLOP/s figure per input line until EOF."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    print(json.dumps(openblas_info()), flush=True)
    for _ in sys.stdin:
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        print(2.0 * n**3 / (time.perf_counter() - t) / 1e9, flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--serve", action="store_true", help="one timed matmul per stdin line")
    args = ap.parse_args()
    if args.serve:
        return serve(args.n)
    out = sgemm_gflops(args.n, args.repeats)
    out["openblas"] = openblas_info()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
