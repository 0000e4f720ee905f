"""Whole local workflow vs a bare in-process loop, per-image wall time.

Both process the same N images (default 100, cycled from testdata/images):
  local   ``yolo_sfn.local.runner.run_batch`` (template.yaml + ASL on moto, every stage's
          handler, intermediates in moto S3, results in moto DynamoDB); wall time of the
          execution (``run.elapsed_s``, deploy and uploads excluded)
  bare    for each image: read bytes, decode, preprocess, Model.run, postprocess
Score threshold: 0.25 for the demo model; ``--random-score`` (0.9) for random-weight models,
on both sides: plain random heads put ~half of all cells of every class above 0.25 (~500,000
NMS candidates, ~90 s per image), which no trained model does; at 0.9 nothing passes, so
decode still runs over every row and only NMS work is left out.
Targets, per-image wall time local / bare:
  YOLOv4-416 fp32 (random weights)   <= 1.15
  yolov3-tiny (demo)                 <= 1.5
``--repeats N`` alternates N bare/local pairs per model and compares the medians.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from yolo_sfn.bench import built_models, machine, report
from yolo_sfn.env import INFER_THREADS

LIMITS = {"yolov4": 1.15, "yolov3-tiny": 1.5}


def bare_loop(model_path: Path, files: list[Path], threads: int, score: float) -> float:
    """Seconds for the in-process loop over ``files`` (model load excluded, one warm-up)."""
    from yolo_sfn.core.image import decode_image
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.core.runtime import Model

    model = Model.load(model_path, threads=threads)
    size = tuple(model.meta.input_size)
    model.run(to_network_input(decode_image(files[0].read_bytes(), name="warm"), size)[0])
    t0 = time.perf_counter()
    for f in files:
        rgb = decode_image(f.read_bytes(), name=f.name)
        batch, tr = to_network_input(rgb, size)
        postprocess(model.run(batch), model.meta, tr, score=score)
    return time.perf_counter() - t0


def local_run(model_path: Path, n: int, score: float) -> dict:
    from yolo_sfn.local.runner import RunOptions, run_batch

    sys.path.insert(0, str(Path(__file__).parent))
    from memory import cycled_inputs

    t0 = time.perf_counter()
    run, _ = run_batch(cycled_inputs(n), RunOptions(model=model_path, annotate=False, score=score))
    wall = time.perf_counter() - t0
    s = run.summary or {}
    return {
        "status": run.status,
        "elapsed_s": run.elapsed_s,
        "wall_incl_deploy_s": wall,
        "succeeded": s.get("succeeded"),
        "failed": s.get("failed"),
    }


def main() -> int:
    ap = report.script_parser(__doc__)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--models", default="yolov3-tiny,yolov4")
    ap.add_argument("--random-score", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=1,
                    help="bare/local pairs per model, alternating; medians are compared")
    args = ap.parse_args()
    os.environ[INFER_THREADS] = str(args.threads)  # the infer handler's thread count
    from yolo_sfn.bench.pipeline import find_images

    files = find_images()
    cycled = [files[i % len(files)] for i in range(args.images)]
    info = machine.machine_info()
    rows, targets, out = [], [], {"machine": info}
    for which in args.models.split(","):
        path = (built_models.demo_model() if which == "yolov3-tiny"
                else built_models.random_model(which, 416))
        score = 0.25 if which == "yolov3-tiny" else args.random_score
        bares, locs = [], []
        for _ in range(args.repeats):  # alternate, so load changes hit both sides alike
            bares.append(bare_loop(path, cycled, args.threads, score))
            locs.append(local_run(path, args.images, score))
        bare = statistics.median(bares)
        loc = sorted(locs, key=lambda r: r["elapsed_s"])[len(locs) // 2]
        per_bare = 1000.0 * bare / args.images
        per_local = 1000.0 * loc["elapsed_s"] / args.images
        rows.append(
            [
                which,
                per_bare,
                per_local,
                per_local / per_bare,
                loc["succeeded"],
                loc["wall_incl_deploy_s"],
            ]
        )
        targets.append(
            report.Target(
                f"local / bare per-image time, {which}",
                per_local / per_bare,
                "<=",
                LIMITS.get(which, 1.5),
                "x",
            )
        )
        out[which] = {
            "bare_s": bare,
            "bare_runs_s": bares,
            "local_runs_s": [r["elapsed_s"] for r in locs],
            "local": loc,
            "per_image_ms": {"bare": per_bare, "local": per_local},
        }
    print(
        f"{args.images} images, threads={args.threads}, repeats={args.repeats}; {info['cpu']}, "
        f"load {info['loadavg_1m']:.2f}, {info['date_utc']}"
    )
    print(
        report.table(
            [
                "model",
                "bare ms/img",
                "local ms/img",
                "ratio",
                "succeeded",
                "local wall incl. deploy s",
            ],
            rows,
            floatfmt="{:.2f}",
        )
    )
    if args.json_out:
        out["targets"] = [t.to_dict() for t in targets]
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    return report.verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
