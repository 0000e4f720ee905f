"""How long the HTML report of a 10,000-image batch takes to build, in how much memory.

Synthetic batch: ``--distinct`` JPEG inputs (640x480, shapes and gradients, written once to a
temporary folder) cycled over ``--images`` results with 0-8 detections each over the COCO
classes, 2 % failures spread over the stages, Map children of ``--child-size`` images with
stage spans, and a cost estimate: what ``yolo-sfn run`` leaves, at scale. Results are
generated lazily, as the runner streams them from disk, so the peak RSS is the report's own.

    python bench/report_10k.py [--images 10000] [--workers 4] [--thumbs-given] [--json-out FILE]

Prints the build time (and, apart, the time to import the report package), the peak RSS (and
the RSS before the build), the HTML size and its size per 1,000 images. ``--thumbs-given``:
hand the report a thumbnail per image made beforehand from decoded pixels
(``thumb_of_pixels``, as the local run can), so the build decodes no image. Exits 1 when the
build takes over 120 s (the issue's target) or the page exceeds 20 MB per 1,000 images.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

_t_import = time.perf_counter()
from yolo_sfn.contract import IMAGE_STAGES as STAGES  # noqa: E402
from yolo_sfn.report import write_report  # noqa: E402

IMPORT_S = time.perf_counter() - _t_import  # matplotlib + Jinja2 + the report package

TARGET_S = 120.0
TARGET_MB_PER_1000 = 20.0
NAMES = (ROOT / "src" / "yolo_sfn" / "data" / "coco.names").read_text().split("\n")
NAMES = [n for n in NAMES if n.strip()]
ERRORS = [("preprocess", "ImageDecodeError", "truncated JPEG (no end-of-image marker)"),
          ("preprocess", "ObjectNotFoundError", "no such key"),
          ("infer", "ModelError", "model metadata disagrees with the model"),
          ("postprocess", "RuntimeError", "injected crash"),
          ("store", "TransientAwsError", "SlowDown after 3 attempts")]


def rss_mb() -> float:
    """Current RSS (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    out = []
    for i in range(n):
        h, w = 480, 640
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256,
                        ((xx + yy) // 3) % 256], axis=-1).astype(np.uint8)
        for _ in range(6):
            c = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = (int(v) for v in rng.integers(0, [w, h]))
            cv2.circle(img, (x, y), int(rng.integers(20, 120)), c, -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.5)
        p = folder / f"input-{i:04d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(p)
    return out


def results(n: int, child_size: int, seed: int):
    """Yield ``n`` result dicts (the per-image schema, batched fields included)."""
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000.0
    spans: dict[str, list[float]] = {}
    for i in range(n):
        child = i // child_size
        if i % child_size == 0:  # one span per stage per child: it runs its images together
            spans, t = {}, t0 + child * 40.0 + rnd.random() * 200
            for stage, mean in zip(STAGES, (300, 2500, 200, 80), strict=True):
                d = mean * child_size / 4 * (1 + rnd.expovariate(3))
                spans[stage] = [t, t + d]
                t += d
        failed = rnd.random() < 0.02
        error = None
        if failed:
            stage, etype, msg = rnd.choice(ERRORS)
            error = {"stage": stage, "type": etype, "message": f"s3://in/p{i}.jpg: {msg}"}
        dets = []
        for _ in range(0 if failed else rnd.randint(0, 8)):
            cid = min(int(rnd.expovariate(0.15)), len(NAMES) - 1)
            x1, y1 = rnd.random() * 0.8, rnd.random() * 0.8
            x2, y2 = x1 + 0.05 + rnd.random() * 0.2, y1 + 0.05 + rnd.random() * 0.2
            dets.append({"label": NAMES[cid], "class_id": cid, "score": round(rnd.random(), 4),
                         "box": [x1 * 640, y1 * 480, x2 * 640, y2 * 480],
                         "box_norm": [x1, y1, x2, y2]})
        upto = STAGES.index(error["stage"]) if error else len(STAGES)
        yield {
            "image_id": f"{i:020x}", "uri": f"s3://bench-input/photos/p{i:05d}.jpg",
            "status": "failed" if failed else "succeeded", "width": 640, "height": 480,
            "detections": dets,
            "timings_ms": {s: (spans[s][1] - spans[s][0]) / child_size * rnd.uniform(0.7, 1.3)
                           for s in STAGES[:upto]},
            "model": {"name": "yolov4-tiny", "precision": "fp32", "weights_sha256": "0" * 64},
            "params": {"score": 0.25, "iou": 0.45, "resize": "stretch"}, "error": error,
            "batch_id": "bench", "child": {"id": f"child-{child:04d}", "size": child_size},
            "spans_ms": {s: spans[s] for s in STAGES[:upto + (1 if error else 0)]},
        }


def summary(n: int, child_size: int, seed: int, inputs: list[Path]) -> dict:
    images, counts, failed = [], {}, 0
    for i, r in enumerate(results(n, child_size, seed)):
        failed += r["status"] == "failed"
        for d in r["detections"]:
            counts[d["label"]] = counts.get(d["label"], 0) + 1
        images.append({"image_id": r["image_id"], "uri": r["uri"], "status": r["status"],
                       "result_uri": None, "num_detections": len(r["detections"]),
                       "error": r["error"], "local_path": str(inputs[i % len(inputs)])})
    return {"batch_id": "bench", "execution_arn": "arn:aws:states:bench", "submitted": n,
            "unique": n, "duplicates": [], "succeeded": n - failed, "failed": failed,
            "class_counts": counts, "images": images}


def given_thumbs(summ: dict, inputs: list[Path]) -> dict:
    """image_id -> Thumb from the decoded pixels of its input (one decode per distinct file)."""
    from yolo_sfn.core.image import decode_image, full_size_hw
    from yolo_sfn.report.thumbs import thumb_of_pixels

    made = {}
    for p in inputs:
        data = p.read_bytes()
        rgb = decode_image(data, name=str(p))
        made[str(p)] = thumb_of_pixels(rgb, drawn=False, full_hw=full_size_hw(data, rgb))
    return {img["image_id"]: made[img["local_path"]] for img in summ["images"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=200, help="distinct input JPEGs")
    ap.add_argument("--child-size", type=int, default=10)
    ap.add_argument("--workers", type=int, default=4, help="thumbnail threads")
    ap.add_argument("--keep", type=Path, help="write the report here and keep it")
    ap.add_argument("--thumbs-given", action="store_true",
                    help="hand in thumbnails made from pixels before the build")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="yolo-sfn-report-bench-") as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(tmp, args.distinct, np.random.default_rng(0))
        summ = summary(args.images, args.child_size, 1, inputs)
        cost = {"images": args.images, "prices_as_of": "2026-11", "counts": {},
                "usd": {"lambda": 0.91, "step_functions": 0.25, "s3": 0.05, "dynamodb": 0.02,
                        "total": 1.23}, "usd_per_1000_images": 0.123,
                "orchestration_share": 0.2}
        out = args.keep or tmp / "report.html"
        thumbs = given_thumbs(summ, inputs) if args.thumbs_given else None
        before = rss_mb()
        t = time.perf_counter()
        write_report(out, summary=summ, results=results(args.images, args.child_size, 1),
                     notes=["synthetic benchmark batch"], cost=cost,
                     execution={"status": "SUCCEEDED", "elapsed_s": 600.0},
                     thumb_workers=args.workers, thumbs=thumbs)
        elapsed = time.perf_counter() - t
        size_mb = out.stat().st_size / 2**20
    per_1000 = size_mb * 1000 / args.images
    row = {"images": args.images, "build_s": round(elapsed, 2),
           "import_s": round(IMPORT_S, 2), "thumbs_given": args.thumbs_given,
           "rss_before_build_mb": round(before), "peak_rss_mb": round(peak_rss_mb()),
           "html_mb": round(size_mb, 1), "html_mb_per_1000_images": round(per_1000, 2),
           "target_s": TARGET_S, "target_mb_per_1000": TARGET_MB_PER_1000}
    print(f"report of {args.images:,} images: {elapsed:.2f} s (target < {TARGET_S:.0f} s; "
          f"import {IMPORT_S:.2f} s before it{', thumbnails given' if args.thumbs_given else ''}), "
          f"peak RSS {row['peak_rss_mb']} MB (RSS before the build {row['rss_before_build_mb']}"
          f" MB), HTML {size_mb:.1f} MB = {per_1000:.2f} MB per 1,000 images "
          f"(target < {TARGET_MB_PER_1000:.0f})")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(row, indent=2))
    return 0 if elapsed < TARGET_S and per_1000 < TARGET_MB_PER_1000 else 1


if __name__ == "__main__":
    sys.exit(main())
