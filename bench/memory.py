"""Memory: infer-stage peak RSS vs model size, and a long local batch with flat memory.

1. For each model a fresh process (``python -m yolo_sfn.bench.probe``) loads it and runs
   ``--runs`` inferences over the real images; its peak RSS (getrusage) must stay within
   model file size + 300 MB.
2. ``--batch N`` (default 1000; 0 skips) runs the whole local workflow (``yolo_sfn.local``,
   demo yolov3-tiny) over N images cycled from testdata/images, sampling this process's RSS
   as items complete. Flat: RSS growth from 20 % to 100 % of the items <= ``--flat-mb``
   (also printed: the least-squares RSS slope over those samples, KiB per image).

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from yolo_sfn.bench import built_models, machine, pipeline, report

HEADROOM_MB = 300.0


def model_list(which: list[str]) -> list[tuple[str, Path]]:
    table = {
        "yolov3-tiny": lambda: ("yolov3-tiny (demo)", built_models.demo_model()),
        "yolov4-tiny": lambda: (
            "yolov4-tiny-416 (random)",
            built_models.random_model("yolov4-tiny", 416),
        ),
        "yolov4": lambda: ("YOLOv4-416 fp32 (random)", built_models.random_model("yolov4", 416)),
    }
    return [table[w]() for w in which]


def cycled_inputs(n: int):
    """``n`` unique s3 URIs over testdata/images, cycled (no duplicates for the planner)."""
    from yolo_sfn.local.engine import INPUT_BUCKET
    from yolo_sfn.local.runner import Inputs

    files = pipeline.find_images()
    uploads = {
        f"s3://{INPUT_BUCKET}/b{i:05d}-{files[i % len(files)].name}": files[i % len(files)]
        for i in range(n)
    }
    return Inputs(execution_input={"images": list(uploads)}, uploads=uploads)


def local_batch(n: int, model: Path) -> dict:
    """Run the local workflow over ``n`` images; RSS samples against completed items."""
    from yolo_sfn.local.runner import RunOptions, run_batch

    samples: list[tuple[float, int, float]] = []  # (elapsed s, done, rss MiB)
    done = {"n": 0}
    stop = threading.Event()
    t0 = time.perf_counter()

    def sampler() -> None:
        while not stop.wait(0.5):
            samples.append((time.perf_counter() - t0, done["n"], machine.current_rss_mb()))

    def progress(p) -> None:
        done["n"] = p.done

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    try:
        run, _ = run_batch(cycled_inputs(n), RunOptions(model=model, annotate=False), progress)
    finally:
        stop.set()
        th.join()
    summary = run.summary or {}

    def rss_at(frac: float) -> float:
        want = frac * n
        hits = [s[2] for s in samples if s[1] >= want]
        return hits[0] if hits else samples[-1][2]

    tail = [(d, r) for _, d, r in samples if d >= 0.2 * n]  # 20 % .. 100 % of the items
    slope = None
    if len(tail) >= 2 and len({d for d, _ in tail}) > 1:
        mx = sum(d for d, _ in tail) / len(tail)
        my = sum(r for _, r in tail) / len(tail)
        slope = sum((d - mx) * (r - my) for d, r in tail) / sum((d - mx) ** 2 for d, _ in tail)
    return {
        "images": n,
        "status": run.status,
        "rss_slope_mb_per_image": slope,
        "elapsed_s": run.elapsed_s,
        "succeeded": summary.get("succeeded"),
        "failed": summary.get("failed"),
        "rss_mb_at": {f"{int(f * 100)}%": rss_at(f) for f in (0.1, 0.2, 0.5, 1.0)},
        "peak_rss_mb": machine.peak_rss_mb(),
        "samples": samples,
    }


def main() -> int:
    ap = report.script_parser(__doc__, with_boto3=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default="yolov3-tiny,yolov4-tiny,yolov4")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--flat-mb", type=float, default=50.0)
    args = ap.parse_args()
    info = machine.machine_info()
    images = pipeline.find_images()
    rows, targets, out = [], [], {"machine": info}
    for label, path in model_list([w for w in args.models.split(",") if w]):
        r = pipeline.cold_start(
            path,
            images,
            threads=args.threads,
            repeats=1,
            runs=args.runs,
            with_boto3=args.with_boto3,
        )
        p = r["probes"][0]
        size = r["model_mb"]
        rows.append(
            [
                label,
                size,
                p["rss_mb"]["import"],
                p["rss_mb"]["load"],
                p["rss_mb"]["first"],
                r["peak_rss_mb"],
                size + HEADROOM_MB,
            ]
        )
        targets.append(
            report.Target(
                f"infer peak RSS {label}",
                r["peak_rss_mb"],
                "<=",
                round(size + HEADROOM_MB, 1),
                " MiB",
            )
        )
        out[label] = {
            "model_mb": size,
            "rss_mb": p["rss_mb"],
            "peak_rss_mb": r["peak_rss_mb"],
            "rss_after_each_mb": p["rss_after_each_mb"],
        }
    print(
        f"infer-stage memory (fresh process, {args.runs} inferences), threads={args.threads}; "
        f"{info['cpu']}, {info['date_utc']}"
    )
    print(
        report.table(
            ["model", "file MiB", "after import", "after load", "after 1st", "peak", "limit"],
            rows,
            floatfmt="{:.0f}",
        )
    )
    if args.batch:
        b = local_batch(args.batch, built_models.demo_model())
        out["batch"] = b
        at = b["rss_mb_at"]
        print(
            f"local workflow, {b['images']} images (demo yolov3-tiny): {b['status']} in "
            f"{b['elapsed_s']:.1f} s, {b['succeeded']} succeeded / {b['failed']} failed; "
            f"RSS MiB at "
            + ", ".join(f"{k} {v:.0f}" for k, v in at.items())
            + f"; peak {b['peak_rss_mb']:.0f}; least-squares slope 20%..100% "
            + (f"{b['rss_slope_mb_per_image'] * 1024:.1f} KiB/image"
               if b["rss_slope_mb_per_image"] is not None else "n/a")
        )
        targets.append(
            report.Target(
                f"RSS growth 20%->100% of a {b['images']}-image batch",
                at["100%"] - at["20%"],
                "<=",
                args.flat_mb,
                " MiB",
            )
        )
        targets.append(
            report.Target(
                "batch images succeeded", float(b["succeeded"] or 0), ">=", float(b["images"])
            )
        )
    if args.json_out:
        out["targets"] = [t.to_dict() for t in targets]
        Path(args.json_out).write_text(json.dumps(out, indent=2))
    return report.verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
