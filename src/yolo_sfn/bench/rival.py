"""OpenCV DNN (the runtime a user would otherwise pick) and the machine's sgemm limit, timed
side by side with a :class:`~yolo_sfn.core.runtime.Model` in one process.

Used by ``yolo-sfn bench --vs-opencv`` and ``bench/inference_vs_opencv.py``.

* Same network: the darknet ``.cfg`` + ``.weights`` the model was converted from (the
  sidecar's ``source`` paths, or given), checked against the sidecar's sha256s, and the cfg
  resized to the model's input size (OpenCV reads the size from the cfg).
* Same input: one real image preprocessed once; LiteRT gets the uint8 NHWC tensor, OpenCV the
  identical values as float32 NCHW / 255.
* Same threads: interpreter threads, ``cv2.setNumThreads``, ``OPENBLAS_NUM_THREADS``.
* Alternating runs (LiteRT, OpenCV, one sgemm matmul in a child process), each after a
  ``settle`` pause in which the previous engine's spin-waiting worker threads go idle, so
  background load hits all three alike.

The sgemm limit is ``conv GFLOP of the cfg / numpy float32 matmul GFLOP/s``: the time the
network's convolutions would take at the speed of the BLAS's best kernel.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from yolo_sfn.bench import machine
from yolo_sfn.errors import InputFileError, ModelError


def darknet_source(
    model_path: Path, meta: Any, cfg: str | Path | None = None, weights: str | Path | None = None
) -> tuple[Path, Path]:
    """``(cfg, weights)`` the model was converted from: the given pair, else the sidecar's
    ``source.cfg`` / ``source.weights``. Both must exist and match the sidecar's
    ``cfg_sha256`` / ``weights_sha256`` (another network would make the comparison
    meaningless); every problem is an error naming the file."""
    from yolo_sfn.model.meta import sha256_file

    given = cfg is not None
    cfg = Path(cfg) if given else Path(meta.source.get("cfg") or "")
    weights = Path(weights) if given else Path(meta.source.get("weights") or "")
    where = "--darknet" if given else f"{model_path}.json source"
    for kind, path in (("cfg", cfg), ("weights", weights)):
        if not str(path) or str(path) == ".":
            raise InputFileError(
                f"{model_path}: its sidecar records no darknet {kind}; give --darknet CFG WEIGHTS"
            )
        if not path.is_file():
            raise InputFileError(f"{where}: darknet {kind} {path} not found")
    for kind, path, want in (
        ("cfg", cfg, meta.cfg_sha256),
        ("weights", weights, meta.weights_sha256),
    ):
        if want and sha256_file(path) != want:
            raise InputFileError(
                f"{where}: {path} is not the {kind} {model_path.name} was converted from "
                f"(sha256 differs from the sidecar's {kind}_sha256)"
            )
    return cfg, weights


def conv_gflop(cfg: Path, input_size: tuple[int, int]) -> float:
    """Darknet's GFLOP count of ``cfg`` at ``input_size`` (H, W); see ``Network.conv_gflop``."""
    from yolo_sfn.darknet.cfg import parse_cfg

    return parse_cfg(cfg, size=tuple(input_size)).conv_gflop


def sized_cfg_text(cfg: Path, input_size: tuple[int, int]) -> str:
    """The cfg's text with ``[net]`` height/width set to ``input_size`` (H, W)."""
    import re

    h, w = input_size
    text = cfg.read_text()
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={w}", text, count=1)
    return re.sub(r"(?m)^\s*height\s*=.*$", f"height={h}", text, count=1)


def opencv_net(cfg: Path, weights: Path, threads: int, input_size: tuple[int, int] | None = None):
    """``(net, output names)``: OpenCV DNN's darknet importer, CPU backend, ``threads``
    threads; the cfg resized to ``input_size`` first when given."""
    try:
        import cv2
    except ImportError as e:
        raise ModelError(
            f"OpenCV is not installed ({e}): pip install 'opencv-python-headless<5'"
        ) from None
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise ModelError(
            f"OpenCV {cv2.__version__} has no darknet importer (removed in 5.0): "
            "pip install 'opencv-python-headless<5'"
        )
    cv2.setNumThreads(threads)
    with tempfile.TemporaryDirectory(prefix="yolo-sfn-rival-") as tmp:
        if input_size is not None:
            sized = Path(tmp) / cfg.name
            sized.write_text(sized_cfg_text(cfg, input_size))
            cfg = sized
        try:
            net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        except cv2.error as e:
            first = (str(e).strip().splitlines() or ["cv2.error"])[-1]
            raise ModelError(f"OpenCV cannot read {cfg} + {weights}: {first}") from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net, net.getUnconnectedOutLayersNames()


def opencv_blob(batch_u8: np.ndarray) -> np.ndarray:
    """(1, H, W, 3) uint8 RGB -> (1, 3, H, W) float32 / 255: the model's input, as OpenCV's."""
    return np.ascontiguousarray(batch_u8.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(
        255
    )


def side_by_side(
    model: Any, net: Any, names: Any, batch_u8: np.ndarray, *, runs: int, settle: float,
    threads: int,
) -> dict:
    """Alternate ``model.run``, OpenCV's forward pass and one sgemm matmul, ``runs`` times.

    Returns ``{"litert", "opencv"}`` (``machine.summary_ms`` dicts), ``"sgemm_gflops"`` (the
    median of the interleaved matmuls), ``"sgemm_interleaved_gflops"`` (each) and
    ``"openblas"`` (kernel, threads of the sgemm child).
    """
    from yolo_sfn.bench.sgemm import SgemmServer

    blob = opencv_blob(batch_u8)
    sg = SgemmServer(threads)
    try:
        model.run(batch_u8)  # warm-up both: first runs allocate and pack weights
        net.setInput(blob)
        net.forward(names)
        t_lite, t_cv, gflops = [], [], []
        for _ in range(runs):
            time.sleep(settle)
            t = time.perf_counter()
            model.run(batch_u8)
            t_lite.append(time.perf_counter() - t)
            time.sleep(settle)
            t = time.perf_counter()
            net.setInput(blob)
            net.forward(names)
            t_cv.append(time.perf_counter() - t)
            time.sleep(settle)
            gflops.append(sg.gflops())
    finally:
        sg.close()
    return {
        "litert": machine.summary_ms(t_lite),
        "opencv": machine.summary_ms(t_cv),
        "sgemm_gflops": float(np.median(gflops)),
        "sgemm_interleaved_gflops": gflops,
        "openblas": sg.info,
    }


def ratios(result: dict, gflop: float) -> dict:
    """``litert_over_opencv`` (time ratio, lower is better), ``sgemm_limit_ms`` and
    ``limit_over_litert`` (the fraction of the sgemm-bound speed reached, higher is better)."""
    lite = result["litert"]["median_ms"]
    limit_ms = 1000.0 * gflop / result["sgemm_gflops"]
    return {
        "gflop": gflop,
        "litert_over_opencv": lite / result["opencv"]["median_ms"],
        "sgemm_limit_ms": limit_ms,
        "limit_over_litert": limit_ms / lite,
    }
