"""Bench models, built once and cached under ``.cache/bench`` (never committed).

* random-weights models: ``testdata/cfg/<cfg>.cfg`` at a given input size -> darknet
  ``.weights`` (``yolo_sfn.darknet.weights.write_random_weights``, seed 0) -> TFLite via the
  project converter. The same ``.cfg`` + ``.weights`` feed OpenCV DNN, so both runtimes see the
  same network and the same numbers.
* the demo model (real COCO yolov3-tiny): ``yolo_sfn.demo.ensure_demo_model()``.
"""

from __future__ import annotations

import json
from pathlib import Path

from yolo_sfn.bench.pipeline import DEFAULT_IMAGES, REPO_ROOT
from yolo_sfn.convert import source_fingerprint
from yolo_sfn.model.meta import sha256_file

CACHE = REPO_ROOT / ".cache" / "bench"
CFG_DIR = REPO_ROOT / "testdata" / "cfg"




def sized_cfg(cfg: Path, size: int, out: Path) -> Path:
    """Copy of ``cfg`` with [net] width/height = ``size`` (for OpenCV, which has no override)."""
    from yolo_sfn.bench.rival import sized_cfg_text

    text = sized_cfg_text(cfg, (size, size))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


def random_darknet(cfg_name: str, size: int, *, seed: int = 0) -> tuple[Path, Path]:
    """(sized cfg, random .weights) for ``testdata/cfg/<cfg_name>.cfg`` at ``size``."""
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import write_random_weights

    src = CFG_DIR / f"{cfg_name}.cfg"
    cfg = sized_cfg(src, size, CACHE / f"{cfg_name}-{size}.cfg")
    weights = CACHE / f"{cfg_name}-{size}-seed{seed}.weights"
    stamp = weights.with_suffix(".json")
    key = {"cfg_sha256": sha256_file(cfg), "seed": seed}
    if not weights.exists() or not stamp.exists() or json.loads(stamp.read_text()) != key:
        write_random_weights(parse_cfg(cfg), weights, seed=seed)
        stamp.write_text(json.dumps(key))
    return cfg, weights


def random_model(
    cfg_name: str,
    size: int,
    precision: str = "fp32",
    *,
    seed: int = 0,
    calibration: Path | None = None,
    winograd: bool | None = None,
) -> Path:
    """Converted ``.tflite`` (+ sidecar) of the random-weights ``cfg_name`` at ``size``.
    ``winograd=False``: plain CONV_2D (the converter's default is Winograd for fp32)."""
    from yolo_sfn.convert import convert

    cfg, weights = random_darknet(cfg_name, size, seed=seed)
    tag = "-direct" if winograd is False else ""
    out = CACHE / f"{cfg_name}-{size}-seed{seed}-{precision}{tag}.tflite"
    stamp = out.with_name(out.name + ".stamp")
    key = json.dumps(
        {
            "weights_sha256": sha256_file(weights),
            "cfg_sha256": sha256_file(cfg),
            "winograd": precision == "fp32" if winograd is None else winograd,  # the default
            "converter": source_fingerprint(),
        }
    )
    if not out.exists() or not stamp.exists() or stamp.read_text() != key:
        calib = calibration or DEFAULT_IMAGES if precision == "int8" else None
        convert(
            cfg,
            weights,
            out,
            precision=precision,
            calibration=calib,
            name=f"{cfg_name}-{size}-random",
            winograd=winograd,
        )
        stamp.write_text(key)
    return out


def demo_model() -> Path:
    """The demo's real COCO yolov3-tiny (fp32), fetched/converted by ``yolo_sfn.demo``."""
    from yolo_sfn.demo import ensure_demo_model

    return Path(ensure_demo_model())
