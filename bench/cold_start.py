"""Cold start of the infer stage: fresh process -> first result, model on local disk.

For each model a new Python process (``python -m yolo_sfn.bench.probe``) imports the runtime,
loads the model and runs the first inference on a preprocessed real image; the time runs from
the parent's spawn to the first result (Python start + imports + load + first inference).
``--repeats`` processes per model (the first may read the model from disk, later ones from the
page cache, as a warm Lambda /tmp would). Median per model against the targets:

  yolov3-tiny (demo, real weights), yolov4-tiny-416 (random)   <= 1.0 s
  YOLOv4-416 fp32 (random)                                     <= 2.0 s

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from yolo_sfn.bench import built_models, machine, pipeline, report


def bench_models(which: list[str]) -> list[tuple[str, Path, float]]:
    """(label, model path, target seconds) in ``which`` order."""
    table = {
        "yolov3-tiny": lambda: ("yolov3-tiny (demo)", built_models.demo_model(), 1.0),
        "yolov4-tiny": lambda: (
            "yolov4-tiny-416 (random)",
            built_models.random_model("yolov4-tiny", 416),
            1.0,
        ),
        "yolov4": lambda: ("YOLOv4-416 fp32 (random)", built_models.random_model("yolov4", 416),
                           2.0),
    }
    return [table[w]() for w in which]


def main() -> int:
    ap = report.script_parser(__doc__, with_boto3=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="yolov3-tiny,yolov4-tiny,yolov4")
    args = ap.parse_args()
    info = machine.machine_info()
    images = pipeline.find_images()[:1]
    rows, targets, out = [], [], {}
    for label, path, limit in bench_models(args.models.split(",")):
        r = pipeline.cold_start(
            path, images, threads=args.threads, repeats=args.repeats, with_boto3=args.with_boto3
        )
        mid = len(r["probes"]) // 2

        def med(key, r=r, mid=mid):
            return sorted(r[key])[mid]

        rows.append(
            [
                label,
                r["model_mb"],
                r["median_cold_s"],
                r["min_cold_s"],
                med("interpreter_start_s"),
                med("import_s"),
                med("load_s"),
                med("first_infer_s"),
                r["peak_rss_mb"],
            ]
        )
        targets.append(report.Target(f"cold start {label}", r["median_cold_s"], "<=", limit, " s"))
        out[label] = {k: v for k, v in r.items() if k != "probes"}
    print(
        f"cold start, fresh process per run ({args.repeats} runs, median), threads={args.threads}; "
        f"{info['cpu']}, load {info['loadavg_1m']:.2f}, {info['date_utc']}"
    )
    print(
        report.table(
            [
                "model",
                "file MiB",
                "median s",
                "min s",
                "python s",
                "import s",
                "load s",
                "1st infer s",
                "peak RSS MiB",
            ],
            rows,
            floatfmt="{:.3f}",
        )
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"machine": info, "models": out, "targets": [t.to_dict() for t in targets]},
                indent=2,
            )
        )
    return report.verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
