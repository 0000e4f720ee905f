"""int8 vs fp32, same model: speed ratio and detection agreement.

Real COCO yolov3-tiny from the demo (``yolo_sfn.demo.ensure_demo_model``, fp32 with the
converter's default Winograd 3x3 convs); converted from the same cfg + weights (cached under
.cache/bench): the int8 model, calibrated on testdata/images, and an fp32 twin with plain
CONV_2D (``winograd=False``), i.e. exactly the int8 model's graph in float. All run through
``yolo_sfn.core.runtime.Model`` on the same preprocessed real images, alternating run by run.
Targets:

  fp32 time / int8 time, same graph (plain CONV_2D fp32)  >= 3.0
  fp32 detections matched by int8 (same class, IoU >= 0.5)  >= 95 %

Also printed, not a target: default fp32 (Winograd) time / int8 time. Winograd makes the
fp32 model faster but cannot be used in int8 (the transforms amplify quantization error), so
this ratio is smaller.

``--yolov4`` also times the random-weights YOLOv4-416 pair (int8 conversion takes minutes).
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from yolo_sfn.bench import built_models, machine, pipeline, report


def demo_twin(fp32: Path, precision: str) -> Path:
    """``int8`` or plain-CONV_2D ``fp32`` twin of the demo model, converted from the cfg /
    weights / names its sidecar names."""
    from yolo_sfn.convert import convert, source_fingerprint
    from yolo_sfn.model.meta import ModelMeta, sha256_file

    src = ModelMeta.load(fp32).source
    cfg, weights, names = Path(src["cfg"]), Path(src["weights"]), src.get("names")
    names = Path(names) if names and Path(names).is_file() else None
    tag = "int8" if precision == "int8" else "fp32-direct"
    out = built_models.CACHE / f"demo-yolov3-tiny-{tag}.tflite"
    stamp = out.with_name(out.name + ".stamp")
    key = f"{sha256_file(weights)} {source_fingerprint()}"
    if not out.exists() or not stamp.exists() or stamp.read_text() != key:
        convert(
            cfg,
            weights,
            out,
            names=names,
            precision=precision,
            calibration=pipeline.DEFAULT_IMAGES if precision == "int8" else None,
            name=f"yolov3-tiny-{tag}",
            winograd=False,
        )
        stamp.write_text(key)
    return out


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(ref: list, other: list, thr: float = 0.5) -> int:
    """Reference detections (best first) greedily paired 1:1 with same-class IoU >= thr."""
    used = set()
    hits = 0
    for d in ref:
        best, best_iou = None, thr
        for j, o in enumerate(other):
            if j in used or o.class_id != d.class_id:
                continue
            v = iou(d.box, o.box)
            if v >= best_iou:
                best, best_iou = j, v
        if best is not None:
            used.add(best)
            hits += 1
    return hits


def speed(runners: list, batches, runs: int) -> list[dict]:
    """Median/min ms of each model, alternating model by model within every run."""
    for m in runners:
        m.run(batches[0])
    times: list[list[float]] = [[] for _ in runners]
    for i in range(runs):
        b = batches[i % len(batches)]
        for m, ts in zip(runners, times, strict=True):
            t = time.perf_counter()
            m.run(b)
            ts.append(time.perf_counter() - t)
    return [machine.summary_ms(ts) for ts in times]


def main() -> int:
    ap = report.script_parser(__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--score", type=float, default=0.25)
    ap.add_argument("--yolov4", action="store_true", help="also time random YOLOv4-416 fp32/int8")
    args = ap.parse_args()

    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.core.runtime import Model

    info = machine.machine_info()
    fp32 = built_models.demo_model()
    int8 = demo_twin(fp32, "int8")
    direct = demo_twin(fp32, "fp32")
    m32 = Model.load(fp32, threads=args.threads)
    m8 = Model.load(int8, threads=args.threads)
    md = Model.load(direct, threads=args.threads)
    images = pipeline.find_images()
    cases = [to_network_input(load_image_file(p), tuple(m32.meta.input_size)) for p in images]
    rows, total, hit = [], 0, 0
    for p, (batch, tr) in zip(images, cases, strict=True):
        d32 = postprocess(m32.run(batch), m32.meta, tr, score=args.score)
        d8 = postprocess(m8.run(batch), m8.meta, tr, score=args.score)
        h = match(d32, d8)
        rows.append([p.name, len(d32), len(d8), h])
        total += len(d32)
        hit += h
    s32, sd, s8 = speed([m32, md, m8], [b for b, _ in cases], args.runs)
    result = {
        "machine": info,
        "threads": args.threads,
        "tiny": {"fp32": s32, "fp32_direct": sd, "int8": s8},
        "detections": rows,
        "matched": hit,
        "fp32_detections": total,
        "file_mb": {
            "fp32": fp32.stat().st_size / 2**20,
            "fp32_direct": direct.stat().st_size / 2**20,
            "int8": int8.stat().st_size / 2**20,
        },
    }
    print(
        f"yolov3-tiny (real COCO weights) fp32 vs int8; threads={args.threads}; "
        f"{info['cpu']}, load {info['loadavg_1m']:.2f}, {info['date_utc']}"
    )
    speed_rows = [
        ["yolov3-tiny fp32 (default: Winograd 3x3)", s32["median_ms"], s32["min_ms"]],
        ["yolov3-tiny fp32, plain CONV_2D (int8's graph)", sd["median_ms"], sd["min_ms"]],
        ["yolov3-tiny int8", s8["median_ms"], s8["min_ms"]],
    ]
    targets = [
        report.Target(
            "yolov3-tiny fp32 / int8 time, same graph",
            sd["median_ms"] / s8["median_ms"],
            ">=",
            3.0,
            "x",
        )
    ]
    wino_ratio = s32["median_ms"] / s8["median_ms"]
    result["winograd_fp32_over_int8"] = wino_ratio
    if args.yolov4:
        v32 = Model.load(
            built_models.random_model("yolov4", 416, "fp32", winograd=False), threads=args.threads
        )
        v8 = Model.load(built_models.random_model("yolov4", 416, "int8"), threads=args.threads)
        vb = [to_network_input(load_image_file(p), (416, 416))[0] for p in images]
        y32, y8 = speed([v32, v8], vb, max(3, args.runs // 4))
        result["yolov4"] = {"fp32": y32, "int8": y8}
        speed_rows += [
            ["YOLOv4-416 fp32 plain CONV_2D (random)", y32["median_ms"], y32["min_ms"]],
            ["YOLOv4-416 int8 (random)", y8["median_ms"], y8["min_ms"]],
        ]
        targets.append(
            report.Target(
                "YOLOv4-416 fp32 / int8 time, same graph",
                y32["median_ms"] / y8["median_ms"],
                ">=",
                3.0,
                "x",
            )
        )
    print(report.table(["model", "median ms", "min ms"], speed_rows))
    print(
        f"not a target: default fp32 (Winograd) / int8 time = {wino_ratio:.2f}x "
        f"(Winograd: fp32 {sd['median_ms'] / s32['median_ms']:.2f}x faster; not usable in int8)"
    )
    print(report.table(["image", "fp32 dets", "int8 dets", "matched"], rows))
    pct = 100.0 * hit / total if total else 100.0
    targets.append(report.Target("fp32 detections matched by int8", pct, ">=", 95.0, "%"))
    print(f"matched {hit}/{total} fp32 detections (same class, IoU >= 0.5, score >= {args.score})")
    result["targets"] = [t.to_dict() for t in targets]
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return report.verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
