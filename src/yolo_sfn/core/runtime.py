"""The TFLite interpreter: the ONE module that imports a runtime.

``ai_edge_litert.interpreter.Interpreter`` (LiteRT) is preferred; ``tflite_runtime`` is the
fallback. :class:`Model` pairs a ``.tflite`` with its ``.tflite.json`` sidecar, checks the
sidecar against the interpreter's tensors, and runs one image at a time:

    run((1, h, w, 3) uint8 RGB) -> [head (1, H, W, A*(5+C)) float32, ...] in meta.heads order

Input conversion: float inputs get ``u8 / 255`` (float32 arithmetic, written straight into the
interpreter's input buffer); quantized (uint8/int8) inputs get ``round(u8 / 255 / scale) + zp``
(a plain copy for the usual uint8 scale=1/255, zp=0). Quantized outputs are dequantized.
A lock makes one Model safe to share between threads (the local runner's Map iterations).

The runtime prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` on stderr once
per process, at the first load. LiteRT 2.3 offers no knob for it (``TF_CPP_MIN_LOG_LEVEL`` is
not read by its minimal logger), and it is left alone: stdout stays clean, and on Lambda it is
one line per cold start.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from yolo_sfn.env import INFER_THREADS, MAX_THREADS
from yolo_sfn.errors import ModelError
from yolo_sfn.model.meta import ModelMeta

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


class Model:
    """A loaded detector model: ``.meta`` (ModelMeta), ``.path``, ``.threads``."""

    def __init__(self, path: Path, meta: ModelMeta, interpreter, threads: int) -> None:
        self.path = path
        self.meta = meta
        self.threads = threads
        self._interp = interpreter
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
    def load(cls, path: str | Path, threads: int | None = None) -> Model:
        """Load ``path`` (.tflite) + sidecar ``path.json``; ModelError naming the file."""
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
        try:  # model_path: the runtime mmaps the file (no second copy of the weights in RAM)
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
