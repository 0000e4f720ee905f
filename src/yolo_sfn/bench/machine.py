"""Facts about the measuring machine, and small statistics helpers.

``sgemm_gflops`` is the machine reference of the "sgemm-bound limit" target: numpy float32
matmul throughput measured in the same run as the model. ``openblas_info`` says which OpenBLAS
kernel and thread count numpy actually uses (the same information threadpoolctl reports), read
through ctypes so no extra package is needed.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import statistics
import time
from pathlib import Path


def median_ms(samples_s: list[float]) -> float:
    return 1000.0 * statistics.median(samples_s)


def min_ms(samples_s: list[float]) -> float:
    return 1000.0 * min(samples_s)


def summary_ms(samples_s: list[float]) -> dict:
    """{"median_ms", "min_ms", "n"} of a list of seconds."""
    if not samples_s:
        return {"median_ms": None, "min_ms": None, "n": 0}
    return {"median_ms": median_ms(samples_s), "min_ms": min_ms(samples_s), "n": len(samples_s)}


def openblas_info() -> dict:
    """{"corename", "threads", "library"} of the OpenBLAS inside numpy (None where unknown)."""
    import numpy as np

    info: dict = {
        "corename": None,
        "threads": None,
        "library": None,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(glob.glob(str(libdir / "*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "", "_64"):
            core = getattr(lib, f"scipy_openblas_get_corename{suffix}", None) or getattr(
                lib, f"openblas_get_corename{suffix}", None
            )
            nthr = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None) or getattr(
                lib, f"openblas_get_num_threads{suffix}", None
            )
            if core is not None:
                core.restype = ctypes.c_char_p
                info["corename"] = core().decode()
                info["threads"] = int(nthr()) if nthr is not None else None
                info["library"] = Path(path).name
                return info
    return info


def sgemm_gflops(n: int = 2048, repeats: int = 7) -> dict:
    """numpy float32 (n x n) @ (n x n): best and median GFLOP/s over ``repeats`` runs."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm up (thread pool, page faults)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
    flop = 2.0 * n**3
    return {
        "n": n,
        "best_gflops": flop / min(times) / 1e9,
        "median_gflops": flop / statistics.median(times) / 1e9,
        "repeats": repeats,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, core count, load average (other processes skew timings), versions."""
    import numpy as np

    info = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        info["loadavg_1m"] = None
    try:
        from importlib.metadata import version

        info["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # not installed
        info["ai_edge_litert"] = None
    return info


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (VmHWM; ru_maxrss would include a
    parent's size inherited across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident set size in MiB (/proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")
