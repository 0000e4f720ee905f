"""Steady-state per-stage timing on real images, and the fresh-process probe launcher.

Stages, as the workflow runs them per image:
    decode       bytes -> (H, W, 3) uint8 RGB          (``core.image.load_image_file``)
    preprocess   RGB -> (1, h, w, 3) uint8 + Transform  (``core.preprocess.to_network_input``)
    infer        input -> heads float32                  (``core.runtime.Model.run``)
    postprocess  heads -> detections                     (``core.postprocess.postprocess``)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yolo_sfn.bench.machine import summary_ms
from yolo_sfn.contract import IMAGE_EXTENSIONS

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_IMAGES = REPO_ROOT / "testdata" / "images"
PHASES = ("decode", "preprocess", "infer", "postprocess")  # what the bench times per image


def find_images(paths: list[str | Path] | None = None) -> list[Path]:
    """Image files from ``paths`` (files or folders; default testdata/images), sorted."""
    from yolo_sfn.errors import InputFileError

    roots = [Path(p) for p in paths] if paths else [DEFAULT_IMAGES]
    found: list[Path] = []
    for r in roots:
        if r.is_dir():
            found += sorted(p for p in r.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif r.is_file():
            found.append(r)
        else:
            raise InputFileError(f"{r}: no such image file or folder")
    if not found:
        raise InputFileError(f"no images in {', '.join(map(str, roots))}")
    return found


def stage_times(
    model,
    images: list[Path],
    *,
    runs: int,
    resize: str = "stretch",
    score: float = 0.25,
    iou: float = 0.45,
) -> dict:
    """Run the pipeline ``runs`` times (images cycled) after one warm-up pass over every image.

    Returns {"first_infer_ms", stage: {"median_ms", "min_ms", "n"}, "total_median_ms",
    "images_per_s", "detections", "candidates", "candidate_cap"} with images/s from the median
    total; "detections" and "candidates" are per image name, from the warm-up pass.
    Post-processing's cap warnings are held back while timing (the same two lines per image
    for every run): ``candidates`` against ``candidate_cap`` says the same once.
    """
    import logging

    from yolo_sfn.core.postprocess import MAX_CANDIDATES

    post_log = logging.getLogger("yolo_sfn.core.postprocess")
    level = post_log.level
    post_log.setLevel(logging.ERROR)
    try:
        out = _stage_times(model, images, runs, resize, score, iou)
    finally:
        post_log.setLevel(level)
    out["candidate_cap"] = MAX_CANDIDATES
    return out


def _stage_times(model, images: list[Path], runs: int, resize: str, score: float,
                 iou: float) -> dict:
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input

    size = tuple(model.meta.input_size)
    samples: dict[str, list[float]] = {s: [] for s in PHASES}
    first_infer = None
    detections, candidates = {}, {}
    for i in range(len(images) + runs):
        path = images[i % len(images)]
        t0 = time.perf_counter()
        rgb = load_image_file(path)
        t1 = time.perf_counter()
        batch, transform = to_network_input(rgb, size, resize)
        t2 = time.perf_counter()
        heads = model.run(batch)
        t3 = time.perf_counter()
        stats: dict = {}
        dets = postprocess(heads, model.meta, transform, score=score, iou=iou, stats=stats)
        t4 = time.perf_counter()
        if first_infer is None:
            first_infer = t3 - t2
        if i < len(images):  # warm-up pass: one per image, not counted
            detections[path.name] = len(dets)
            candidates[path.name] = stats["candidates"]
            continue
        for name, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            samples[name].append(dt)
    out: dict = {"first_infer_ms": 1000.0 * first_infer, "runs": runs, "images": len(images)}
    for name in PHASES:
        out[name] = summary_ms(samples[name])
    totals = [sum(v) for v in zip(*(samples[s] for s in PHASES), strict=True)]
    out["total"] = summary_ms(totals)
    out["images_per_s"] = 1000.0 / out["total"]["median_ms"] if totals else None
    out["detections"] = detections
    out["candidates"] = candidates
    return out


def infer_only_ms(model, batches: list, runs: int) -> list[float]:
    """Seconds per ``model.run`` over ``runs`` calls (batches cycled), after one warm-up."""
    model.run(batches[0])
    out = []
    for i in range(runs):
        t = time.perf_counter()
        model.run(batches[i % len(batches)])
        out.append(time.perf_counter() - t)
    return out


def write_inputs(
    model_meta, images: list[Path], directory: Path, resize: str = "stretch"
) -> list[Path]:
    """Preprocessed inputs as ``.npy`` (what the workflow's preprocess stage stores)."""
    import numpy as np

    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for img in images:
        batch, _ = to_network_input(load_image_file(img), tuple(model_meta.input_size), resize)
        p = directory / f"{img.stem}.npy"
        np.save(p, batch)
        paths.append(p)
    return paths


def probe(
    model_path: str | Path,
    inputs: list[Path],
    *,
    threads: int | None = None,
    runs: int = 0,
    env: dict | None = None,
    timeout: float = 600,
    with_boto3: bool = False,
) -> dict:
    """Run ``python -m yolo_sfn.bench.probe`` in a fresh process; its JSON result plus
    ``cold_total_s`` (spawn -> first inference result)."""
    cmd = [sys.executable, "-m", "yolo_sfn.bench.probe", "--model", str(model_path)]
    for p in inputs:
        cmd += ["--input", str(p)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    cmd += ["--runs", str(runs)]
    if with_boto3:
        cmd.append("--with-boto3")
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    spawned = time.time()
    proc = subprocess.run(
        [*cmd, "--spawned-at", repr(spawned)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def cold_start(
    model_path: str | Path,
    images: list[Path],
    *,
    threads: int | None = None,
    repeats: int = 3,
    runs: int = 0,
    with_boto3: bool = False,
) -> dict:
    """Fresh-process probes (``repeats`` of them; page cache warm after the first).

    Returns {"first": probe result, "cold_total_s": [..], "median_cold_s", "peak_rss_mb": max}.
    """
    from yolo_sfn.model.meta import ModelMeta

    meta = ModelMeta.load(model_path)
    with tempfile.TemporaryDirectory(prefix="yolo-sfn-bench-") as tmp:
        inputs = write_inputs(meta, images, Path(tmp))
        results = [
            probe(model_path, inputs, threads=threads, runs=runs, with_boto3=with_boto3)
            for _ in range(repeats)
        ]
    totals = sorted(r["cold_total_s"] for r in results)
    return {
        "probes": results,
        "cold_total_s": [r["cold_total_s"] for r in results],
        "median_cold_s": totals[len(totals) // 2],
        "min_cold_s": totals[0],
        "import_s": [r["import_s"] for r in results],
        "load_s": [r["load_s"] for r in results],
        "first_infer_s": [r["first_infer_s"] for r in results],
        "interpreter_start_s": [r["interpreter_start_s"] for r in results],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "model_mb": Path(model_path).stat().st_size / 2**20,
    }
