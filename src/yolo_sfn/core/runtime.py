"""The TFLite interpreter: the ONE module that imports a runtime.

``ai_edge_litert.interpreter.Interpreter`` (LiteRT) is preferred; ``tflite_runtime`` is the
fallback. :class:`Model` pairs a ``.tflite`` with its ``.tflite.json`` sidecar, checks the
sidecar against the interpreter's tensors, and runs one image at a time:

    run((1, h, w, 3) uint8 RGB) -> [head (1, H, W, A*(5+C)) float32, ...] in meta.heads order

Input conversion: float inputs get ``u8 / 255`` (float32 arithmetic, written straight into the
interpreter's input buffer); quantized (uint8/int8) inputs get ``round(u8 / 255 / scale) + zp``
(a plain copy for the usual uint8 scale=1/255, zp=0). Quantized outputs are dequantized.
A lock makes one Model safe to share between threads (the local runner's Map iterations).

XNNPACK weight cache (float models only): XNNPACK repacks every weight at load, so a plain
load holds the mmapped model *and* a packed copy (YOLOv4-416 fp32, Winograd convs, 382 MiB file:
907 MiB peak RSS; plain convs, 245 MiB: 622 MiB; 0.4-0.6 s
load). LiteRT's ``CompiledModel`` can write the packed weights to a cache file once and mmap it
on later loads without touching the model's weights (measured: 574 / 391 MiB peak, 0.05 s load
plus ~0.37 / 0.25 s to check the file's sha256).
The ``Interpreter`` API of ai_edge_litert 2.3 cannot (no option, no env variable, no exported
XNNPACK delegate C API), so float models go through ``CompiledModel`` when a cache directory is
usable, with the same XNNPACK kernels: outputs are bit-identical to the ``Interpreter``'s.

* The cache file is keyed by the model file's identity (size, mtime, inode, first/last MiB
  sha256), the CPU flags and the runtime version, and its name carries the sha256 of its own
  bytes: every load re-hashes it (~0.25 s for YOLOv4-416's 257 MB) and rebuilds it on a
  mismatch, so a flipped bit in the packed weights is caught, not silently used.
* It is built in a child process (XNNPACK abort()s the process when the disk fills up
  mid-write; free space is checked first too) under a temporary name, loaded once more there
  to check XNNPACK accepts it, hashed, then renamed into place; the newest
  ``WEIGHT_CACHE_KEEP`` files (at most ``WEIGHT_CACHE_MAX_BYTES`` together) are kept. Any error
  on this path falls back to the plain ``Interpreter``.
* ``CompiledModel`` logs ~30 accelerator-probing lines on stderr per load (no log-level knob
  in 2.3; ``TF_CPP_MIN_LOG_LEVEL`` is ignored). The load runs with fd 2 captured and only
  lines that are not LiteRT's ``INFO``/``WARNING`` probing are passed on (:func:`_quiet_litert`);
  LiteRT logs two more ``DestroyAccelerator`` lines after Python has finished, which an
  ``atexit`` hook filters the same way (:func:`_filter_exit_noise`). The plain path's one
  ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` line is filtered the same way.

Directory: ``$MODEL_CACHE_DIR.xnnpack`` (a sibling of the workflow's model cache), else
``/tmp/yolo-sfn-models.xnnpack`` on Lambda, else
``$XDG_CACHE_HOME`` or ``~/.cache`` ``/yolo-sfn/xnnpack``. When it is used: see
:meth:`Model.load`'s ``weight_cache`` (default on for float models >= 64 MiB, off on Lambda).
Costs: the first load of a model on a machine builds the file in a child process (+0.6-1.5 s;
the child peaks at ~82 MiB RSS for YOLOv4-416, as XNNPACK streams the packed weights to the
file), and the disk space of one packed copy per model.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import uuid
from glob import escape as glob_escape
from pathlib import Path

import numpy as np

from yolo_sfn.env import INFER_THREADS, MAX_THREADS, MODEL_CACHE_DIR, WEIGHT_CACHE
from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import ModelMeta, sha256_file

try:  # pragma: no cover - which branch runs depends on the environment
    from ai_edge_litert.interpreter import Interpreter as _Interpreter

    RUNTIME = "ai_edge_litert"
except ImportError:  # pragma: no cover
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter

        RUNTIME = "tflite_runtime"
    except ImportError:
        _Interpreter = None
        RUNTIME = None

_U8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)  # exact float32 u8 / 255

WEIGHT_CACHE_KEEP = 8  # newest cache files kept in the cache directory ...
WEIGHT_CACHE_MAX_BYTES = 2 << 30  # ... and at most this many bytes of them
CACHE_SHA_HEX = 16  # hex digits of the cache file's sha256 in its name
WEIGHT_CACHE_MIN_BYTES = 64 << 20  # weight_cache=None: only models at least this large
_log = logging.getLogger(__name__)


def default_threads() -> int:
    """INFER_THREADS from the environment, else os.cpu_count()."""
    raw = os.environ.get(INFER_THREADS, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ModelError(f"{INFER_THREADS}={raw!r} is not an integer") from None
        if not 1 <= n <= MAX_THREADS:
            raise ModelError(f"{INFER_THREADS}={raw!r} must be in 1..{MAX_THREADS}")
        return n
    return os.cpu_count() or 1


def _quant_params(detail: dict) -> tuple[float, int]:
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def _match_outputs(meta: ModelMeta, outputs: list[dict], where: str) -> list[int]:
    """Output tensor index for each meta head, matched by shape (ties in output order)."""
    free = list(outputs)
    order = []
    for i in range(len(meta.heads)):
        want = meta.head_shape(i)
        hit = next((d for d in free if tuple(int(s) for s in d["shape"]) == want), None)
        if hit is None:
            have = [tuple(int(s) for s in d["shape"]) for d in outputs]
            raise ModelError(
                f"{where}: metadata head {i} expects output shape {want}, model outputs are {have}"
            )
        free.remove(hit)
        order.append(int(hit["index"]))
    if free:
        extra = [tuple(int(s) for s in d["shape"]) for d in free]
        raise ModelError(f"{where}: model has outputs {extra} not described by its metadata")
    return order


def weight_cache_default() -> bool:
    """``$YOLO_SFN_WEIGHT_CACHE``: "1" on, "0" off, unset/empty: on unless on AWS Lambda."""
    raw = os.environ.get(WEIGHT_CACHE, "").strip()
    if raw not in ("", "0", "1"):
        raise ModelError(f"{WEIGHT_CACHE}={raw!r} must be 0, 1 or empty")
    if raw:
        return raw == "1"
    return not os.environ.get("AWS_LAMBDA_FUNCTION_NAME")


def weight_cache_dir() -> Path:
    """Directory of XNNPACK weight cache files (see the module docstring)."""
    env = os.environ.get(MODEL_CACHE_DIR, "").strip()
    if env:  # a sibling: the workflow owns the layout inside MODEL_CACHE_DIR (one dir per model)
        d = Path(env)
        return d.parent / f"{d.name}.xnnpack"
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return Path("/tmp/yolo-sfn-models.xnnpack")
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "yolo-sfn" / "xnnpack"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _weight_cache_key(p: Path) -> str:
    """Model identity + CPU flags + runtime version -> 20 hex digits."""
    st = p.stat()
    h = hashlib.sha256()
    h.update(f"{RUNTIME}\n{_runtime_version()}\n{platform.machine()}\n{_cpu_flags()}\n".encode())
    h.update(f"{st.st_size}\n{st.st_mtime_ns}\n{st.st_ino}\n{st.st_dev}\n".encode())
    with p.open("rb") as f:  # a full sha256 of a 245 MB model costs ~0.5 s, more than a load
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:20]


def _runtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover
        return "?"


def _prune_cache(folder: Path, keep: int, max_bytes: int) -> None:
    """Keep the newest ``keep`` cache files, and only as many as fit in ``max_bytes``."""
    try:
        stats = [(f, f.stat()) for f in folder.glob("*.xnnpack")]
        stats.sort(key=lambda fs: fs[1].st_mtime, reverse=True)
        total = 0
        for i, (f, st) in enumerate(stats):
            total += st.st_size
            if i >= keep or (i > 0 and total > max_bytes):
                f.unlink(missing_ok=True)
    except OSError:
        pass


# LiteRT's CompiledModel probing lines ("INFO: [environment.cc:36] ...", "WARNING: [npu_registry
# .cc:34] ...", plus the "└ ..." continuation of a dropped line). Anything else is passed on.
_LITERT_NOISE = re.compile(r"^(INFO|WARNING): (\[[\w.]+:\d+\] |Created TensorFlow Lite)")
_FD2_LOCK = threading.RLock()  # re-entrant: a GC'd model may be freed inside a load


def _pass_on(text: str, write) -> None:
    """Write the lines of ``text`` that are not LiteRT probing noise."""
    dropping = False
    for line in text.splitlines(keepends=True):
        if _LITERT_NOISE.match(line) or (dropping and line.startswith("\u2514")):
            dropping = True
            continue
        dropping = False
        write(line)


@contextlib.contextmanager
def _quiet_litert():
    """Route fd 2 through a pipe while LiteRT loads; a thread forwards every line that is not
    its probing noise to the real stderr as it arrives (so a crash mid-load still shows what
    was printed before it)."""
    with _FD2_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            r, w = os.pipe()
        except OSError:
            os.close(saved)
            raise
        # the thread owns its own copy of the real stderr: if a child process spawned meanwhile
        # keeps the pipe open past the join timeout, it never writes to a closed (reused) fd
        pump = threading.Thread(target=_forward, args=(r, os.dup(saved)), daemon=True)
        pump.start()
        try:
            os.dup2(w, 2)
        except OSError:
            os.close(saved)
            raise
        finally:
            os.close(w)  # no writer left but fd 2: the thread ends when fd 2 is restored
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)  # the pipe's last writer is gone: the thread sees EOF
            pump.join(timeout=5.0)
            os.close(saved)


def _forward(r: int, out: int) -> None:
    """Copy lines from fd ``r`` to fd ``out``, dropping LiteRT noise; closes both at EOF."""
    buf = b""
    try:
        with os.fdopen(r, "rb", buffering=0) as src:
            while chunk := src.read(65536):
                *lines, buf = (buf + chunk).split(b"\n")
                text = "".join(line.decode(errors="replace") + "\n" for line in lines)
                _pass_on(text, lambda t: os.write(out, t.encode()))
        if buf:
            _pass_on(buf.decode(errors="replace"), lambda t: os.write(out, t.encode()))
    finally:
        os.close(out)


_EXIT_FILTER = (
    "import re, sys\n"
    f"noise = re.compile({_LITERT_NOISE.pattern.encode()!r})\n"
    "for line in sys.stdin.buffer:\n"
    "    if not noise.match(line):\n"
    "        sys.stdout.buffer.write(line)\n"
    "        sys.stdout.buffer.flush()\n"
)
_exit_filter_armed = False


def _filter_exit_noise() -> None:
    """atexit: LiteRT destroys its accelerators after Python has finished and logs one INFO line
    each. Route fd 2 through a small filter process for those last moments; the filter reads
    until every writer has exited and forwards anything else (late tracebacks included)."""
    try:
        sys.stderr.flush()
        r, w = os.pipe()
        saved = os.dup(2)
        try:
            subprocess.Popen(
                [sys.executable, "-S", "-c", _EXIT_FILTER],
                stdin=r,
                stdout=saved,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
            os.dup2(w, 2)
        finally:
            for fd in (r, w, saved):
                os.close(fd)
    except Exception:
        pass


def _arm_exit_filter() -> None:
    global _exit_filter_armed
    if not _exit_filter_armed:
        _exit_filter_armed = True
        atexit.register(_filter_exit_noise)


class _Compiled:
    """A float model run through LiteRT ``CompiledModel`` + an XNNPACK weight cache file.

    Offers the little of the ``Interpreter`` API that :class:`Model` uses, with output
    "indices" being positions in the output buffer list.
    """

    def __init__(self, path: Path, threads: int, cache_file: Path) -> None:
        from ai_edge_litert import compiled_model as cm

        opts = cm.Options(
            cm.HardwareAccelerator.CPU,
            cpu_options=cm.CpuOptions(
                num_threads=threads, xnnpack_weight_cache_path=str(cache_file)
            ),
        )
        _arm_exit_filter()
        with _quiet_litert():
            self.model = cm.CompiledModel.from_file(str(path), options=opts)
            sigs = self.model.get_signature_list()
            if len(sigs) != 1:
                raise ValueError(f"{len(sigs)} signatures")
            key = next(iter(sigs))
            ins = self.model.get_input_tensor_details(key)
            outs = self.model.get_output_tensor_details(key)
            self._inputs = [
                {"index": i, "shape": ins[n]["shape"], "dtype": np.dtype(ins[n]["dtype"])}
                for i, n in enumerate(sigs[key]["inputs"])
            ]
            self._outputs = [
                {"index": i, "shape": outs[n]["shape"], "dtype": np.dtype(outs[n]["dtype"])}
                for i, n in enumerate(sigs[key]["outputs"])
            ]
            if any(d["dtype"] != np.float32 for d in self._inputs + self._outputs):
                raise ValueError("not a float32-in, float32-out model")
            self._out_sizes = [int(np.prod(d["shape"])) for d in self._outputs]
            self._in_bufs = self.model.create_input_buffers(0)
            self._out_bufs = self.model.create_output_buffers(0)
            # the first TensorBuffer.write creates (and logs) one more LiteRT environment
            self._in_bufs[0].write(np.zeros(self._inputs[0]["shape"], np.float32))

    def __del__(self) -> None:
        """Free the model and its buffers while fd 2 is captured: LiteRT logs one
        ``DestroyAccelerator`` INFO line per accelerator when its environment goes."""
        if sys.is_finalizing():  # no new threads now; the atexit filter drops the lines
            return
        try:
            with _quiet_litert():
                self._in_bufs = self._out_bufs = None
                self.model = None
        except Exception:  # never raise from __del__
            pass

    def get_input_details(self) -> list[dict]:
        return [dict(d) for d in self._inputs]

    def get_output_details(self) -> list[dict]:
        return [dict(d) for d in self._outputs]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self._in_bufs[0].write(x)
        self.model.run_by_index(0, self._in_bufs, self._out_bufs)
        return [
            b.read(n, np.float32).reshape(d["shape"])
            for b, n, d in zip(self._out_bufs, self._out_sizes, self._outputs, strict=True)
        ]


def _float_input(p: Path, threads: int) -> bool:
    """One float32 input? Read from the flatbuffer without delegates or tensor allocation."""
    from ai_edge_litert.interpreter import OpResolverType

    try:
        probe = _Interpreter(
            model_path=str(p),
            num_threads=threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        inputs = probe.get_input_details()
    except Exception:  # the plain path reports a corrupt model
        return False
    return len(inputs) == 1 and np.dtype(inputs[0]["dtype"]) == np.float32


# Builds a cache file in a child process: XNNPACK abort()s the whole process when it cannot
# write the cache (disk full), so that must not happen in ours. The child then loads the file
# a second time and fails unless XNNPACK accepts it unchanged.
_BUILD_CHILD = """
import os, sys
from ai_edge_litert import compiled_model as cm
model, cache, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load():
    cpu = cm.CpuOptions(num_threads=threads, xnnpack_weight_cache_path=cache)
    opts = cm.Options(cm.HardwareAccelerator.CPU, cpu_options=cpu)
    cm.CompiledModel.from_file(model, options=opts)
    st = os.stat(cache)
    return st.st_size, st.st_mtime_ns, st.st_ino
first = load()
if not first[0] or load() != first:
    sys.exit(3)
"""
BUILD_TIMEOUT_S = 600.0


def _build_cache(p: Path, threads: int, folder: Path, prefix: str) -> Path:
    """Write the cache file for ``p`` as ``folder/<prefix>.<sha256 of the file>.xnnpack``
    (child process, temporary name, hash, rename); returns its path."""
    need = 2 * p.stat().st_size + (64 << 20)  # fp16 weights are packed as fp32: up to 2x
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(f"{free >> 20} MiB free in {folder}, the cache needs ~{need >> 20}")
    tmp = folder / f".{prefix}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _BUILD_CHILD, str(p), str(tmp), str(threads)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            kept: list[str] = []
            _pass_on(proc.stderr.decode(errors="replace"), kept.append)
            tail = [line.strip() for line in kept if line.strip()][-1:] or [""]
            raise RuntimeError(f"cache build exited with {proc.returncode}: {tail[0][:300]}")
        final = folder / f"{prefix}.{sha256_file(tmp)[:CACHE_SHA_HEX]}.xnnpack"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _prune_cache(folder, WEIGHT_CACHE_KEEP, WEIGHT_CACHE_MAX_BYTES)
    return final


def _verified_cache(folder: Path, prefix: str) -> Path | None:
    """The newest ``<prefix>.<sha>.xnnpack`` whose bytes still hash to its name; files that
    do not (flipped bits, truncation, a rewrite) are deleted."""
    found = []
    for f in folder.glob(f"{glob_escape(prefix)}.*.xnnpack"):
        with contextlib.suppress(OSError):
            found.append((f.stat().st_mtime, f))
    for _, f in sorted(found, reverse=True):
        want = f.name[len(prefix) + 1 : -len(".xnnpack")]
        try:
            ok = len(want) == CACHE_SHA_HEX and sha256_file(f).startswith(want)
        except OSError:
            continue
        if ok:
            return f
        _log.warning("%s: XNNPACK weight cache does not match its checksum, rebuilding", f)
        f.unlink(missing_ok=True)
    return None


def _load_compiled(p: Path, threads: int, folder: Path) -> _Compiled:
    """``_Compiled`` with a verified cache file for ``p`` in ``folder`` (built if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{p.stem[:60]}.{_weight_cache_key(p)}"
    final = _verified_cache(folder, prefix) or _build_cache(p, threads, folder, prefix)
    compiled = _Compiled(p, threads, final)
    with contextlib.suppress(OSError):
        os.utime(final)  # most recently used: survives pruning
    return compiled


class Model:
    """A loaded detector model: ``.meta`` (ModelMeta), ``.path``, ``.threads``."""

    def __init__(self, path: Path, meta: ModelMeta, interpreter, threads: int) -> None:
        self.path = path
        self.meta = meta
        self.threads = threads
        self._interp = interpreter
        self._compiled = isinstance(interpreter, _Compiled)
        self._lock = threading.Lock()
        where = str(path)
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"{where}: expected 1 input tensor, model has {len(inputs)}")
        inp = inputs[0]
        h, w = meta.input_size
        shape = tuple(int(s) for s in inp["shape"])
        if shape != (1, h, w, 3):
            raise ModelError(
                f"{where}: input shape {shape} does not match metadata input_size "
                f"{(h, w)} (expected (1, {h}, {w}, 3))"
            )
        self._in_index = int(inp["index"])
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_scale, self._in_zp = _quant_params(inp)
        if self._in_dtype not in (np.float32, np.float16, np.uint8, np.int8):
            raise ModelError(f"{where}: unsupported input dtype {self._in_dtype}")
        if self._in_dtype.kind in "iu" and self._in_scale <= 0:
            raise ModelError(f"{where}: integer input without quantization parameters")
        self._in_lut = self._input_lut()
        outs = {int(d["index"]): d for d in interpreter.get_output_details()}
        self._out_index = _match_outputs(meta, list(outs.values()), where)
        self._out_quant = []
        for idx in self._out_index:
            d = outs[idx]
            dt = np.dtype(d["dtype"])
            if dt.kind in "iu":
                scale, zp = _quant_params(d)
                if scale <= 0:
                    raise ModelError(f"{where}: integer output without quantization parameters")
                self._out_quant.append((np.float32(scale), np.float32(zp)))
            else:
                self._out_quant.append(None)

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | Path, threads: int | None = None, *, weight_cache: bool | None = None
    ) -> Model:
        """Load ``path`` (.tflite) + sidecar ``path.json``; ModelError naming the file.

        weight_cache: True = float models use an XNNPACK weight cache file (module docstring)
        when the runtime offers it; False = always the plain ``Interpreter``; None (default) =
        ``$YOLO_SFN_WEIGHT_CACHE``: ``1`` on, ``0`` off, unset or empty = on, except on AWS
        Lambda; and only for model files of at least ``WEIGHT_CACHE_MIN_BYTES`` (64 MiB: below
        that the saving is tens of MiB and ~0.05 s, less than the one-off build). It saves
        230-330 MiB of peak RSS on YOLOv4-416 (BENCHMARKS.md). Off on Lambda
        because ``/tmp`` starts empty in every execution environment: each cold start would
        pay the build (+0.6-1.5 s on YOLOv4-416) and the Infer function's memory is sized for
        CPU, not RSS.
        """
        p = Path(path)
        if _Interpreter is None:
            raise ModelError(
                f"{p}: no TFLite runtime installed (pip install ai-edge-litert, or tflite-runtime)"
            )
        if not p.is_file():
            raise ModelError(
                f"{p}: model file not found" + (" (a directory)" if p.is_dir() else "")
            )
        meta = ModelMeta.load(p)
        n = default_threads() if threads is None else int(threads)
        if not 1 <= n <= MAX_THREADS:
            raise ModelError(f"{p}: threads must be in 1..{MAX_THREADS}, got {n}")
        try:
            with p.open("rb") as f:
                head = f.read(8)
        except OSError as e:
            raise ModelError(f"{p}: cannot read model ({e.strerror or e})") from None
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelError(f"{p}: not a TFLite flatbuffer (missing TFL3 identifier)")
        if weight_cache is None:
            weight_cache = weight_cache_default() and p.stat().st_size >= WEIGHT_CACHE_MIN_BYTES
        if weight_cache and RUNTIME == "ai_edge_litert" and _float_input(p, n):
            try:
                compiled = _load_compiled(p, n, weight_cache_dir())
            except Exception as e:  # any failure: the plain path, exactly as without a cache
                _log.warning("%s: XNNPACK weight cache not used (%s: %s)", p, type(e).__name__, e)
            else:
                return cls(p, meta, compiled, n)
        try:  # model_path: the runtime mmaps the file (no second copy of the weights in RAM)
            with _quiet_litert():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                interp = _Interpreter(model_path=str(p), num_threads=n)
                interp.allocate_tensors()
        except Exception as e:  # the runtime raises ValueError/RuntimeError with C++ text
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(f"{p}: corrupt or unsupported TFLite model ({first})") from None
        return cls(p, meta, interp, n)

    # -- inference -----------------------------------------------------------------------
    def _input_lut(self) -> np.ndarray | None:
        """uint8 value -> input tensor value, 256 entries (None: plain copy of uint8)."""
        dt = self._in_dtype
        if dt.kind == "f":
            return _U8_TO_UNIT.astype(dt)
        if dt == np.uint8 and abs(self._in_scale * 255 - 1) < 1e-6 and self._in_zp == 0:
            return None
        q = np.round(_U8_TO_UNIT / np.float32(self._in_scale)) + np.float32(self._in_zp)
        info = np.iinfo(dt)
        return np.clip(q, info.min, info.max).astype(dt)

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)  # type: ignore[return-value]

    def run(self, batch_u8: np.ndarray) -> list[np.ndarray]:
        """(1, h, w, 3) uint8 RGB -> heads (1, H, W, A*(5+C)) float32, in meta.heads order."""
        h, w = self.meta.input_size
        if batch_u8.shape != (1, h, w, 3) or batch_u8.dtype != np.uint8:
            raise ValueError(
                f"{self.path.name}: expected (1, {h}, {w}, 3) uint8, "
                f"got {batch_u8.shape} {batch_u8.dtype}"
            )
        with self._lock:
            interp = self._interp
            if self._compiled:
                x = np.divide(batch_u8, np.float32(255), dtype=np.float32)
                outs = interp.run(x)  # fresh float32 arrays, in signature output order
                return [outs[i] for i in self._out_index]
            if self._in_dtype == np.float32:
                # u8 / 255 in float32, straight into the interpreter's input buffer (no temp)
                np.divide(batch_u8, np.float32(255), out=interp.tensor(self._in_index)())
            elif self._in_lut is None:
                interp.set_tensor(self._in_index, batch_u8)
            else:
                np.take(self._in_lut, batch_u8, out=interp.tensor(self._in_index)())
            interp.invoke()
            heads = []
            for idx, quant in zip(self._out_index, self._out_quant, strict=True):
                if quant is None:
                    heads.append(np.array(interp.tensor(idx)(), dtype=np.float32))
                else:
                    scale, zp = quant
                    q = interp.tensor(idx)()
                    out = np.subtract(q, zp, dtype=np.float32)
                    out *= scale
                    heads.append(out)
            return heads

    def __repr__(self) -> str:
        m = self.meta
        return f"Model({str(self.path)!r}, {m.name!r}, {m.precision}, threads={self.threads})"
