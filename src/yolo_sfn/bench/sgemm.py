"""Launch the sgemm reference (``python -m yolo_sfn.bench.sgemm_child``) with a clean BLAS env."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SLOW_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def sgemm_env(threads: int) -> dict:
    """This environment minus the OpenBLAS kernel overrides, with ``threads`` BLAS threads."""
    env = {k: v for k, v in os.environ.items() if k not in SLOW_BLAS_ENV}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def measure_sgemm(threads: int, n: int = 2048, repeats: int = 7) -> dict:
    """GFLOP/s (best, median), OpenBLAS kernel and threads, from a fresh process."""
    cmd = [
        sys.executable,
        "-m",
        "yolo_sfn.bench.sgemm_child",
        "--n",
        str(n),
        "--repeats",
        str(repeats),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=sgemm_env(threads), check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


class SgemmServer:
    """A child process that runs one timed matmul per request, so sgemm can be interleaved
    run by run with the model under test (same background load for both)."""

    def __init__(self, threads: int, n: int = 2048) -> None:
        cmd = [sys.executable, "-m", "yolo_sfn.bench.sgemm_child", "--n", str(n), "--serve"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=sgemm_env(threads)
        )
        self.info = json.loads(self.proc.stdout.readline())

    def gflops(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
