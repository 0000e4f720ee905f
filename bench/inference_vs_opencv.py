"""YOLOv4-416 fp32: LiteRT (yolo_sfn.core.runtime.Model) vs OpenCV DNN, and vs the machine.

Same network (testdata/cfg/yolov4.cfg at 416, random darknet weights, seed 0), same input
(a real image, stretch-resized once: LiteRT gets the uint8 NHWC tensor, OpenCV the identical
values as float32 NCHW / 255), same thread count (interpreter threads, cv2.setNumThreads,
OPENBLAS_NUM_THREADS for sgemm). The two runtimes alternate run by run so background load hits
both alike, each after a --settle pause (default 0.25 s) in which the previous engine's
spin-waiting worker threads go idle. Targets:

  LiteRT / OpenCV time                          <= 0.85
  (60.1 GFLOP / sgemm GFLOP/s) / LiteRT time    >= 0.75   (sgemm measured in this run)
  (preprocess + postprocess) / infer            <  0.10   (real images)

Exit status 1 when a target is missed. ``--json-out F`` writes every number.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from yolo_sfn.bench import built_models, machine, pipeline, report, rival
from yolo_sfn.bench.sgemm import measure_sgemm


def trained_like_heads(heads: list[np.ndarray], meta, rows: int, seed: int = 0) -> list[np.ndarray]:
    """Random-weight heads rewritten to look like a trained detector's output.

    Random weights make every cell an 'object' of every class (about 500,000 candidates on
    YOLOv4-416), which no trained model does. Here objectness and class logits are set to -8
    everywhere except ``rows`` random (cell, anchor) rows, which get objectness +3 and one
    random class +3; box logits stay as the network produced them. Post-processing is then
    timed on a realistic load (a few dozen candidates, overlapping boxes for NMS).
    """
    rng = np.random.default_rng(seed)
    stride = 5 + meta.num_classes
    out = []
    total = sum(h.shape[1] * h.shape[2] * (h.shape[3] // stride) for h in heads)
    for h in heads:
        r = h.reshape(-1, stride).copy()  # (H*W*A, 5 + C) in meta's channel order
        r[:, 4:] = -8.0
        pick = rng.choice(r.shape[0], size=max(1, rows * r.shape[0] // total), replace=False)
        r[pick, 4] = 3.0
        r[pick, 5 + rng.integers(0, meta.num_classes, pick.size)] = 3.0
        out.append(r.reshape(h.shape))
    return out


def prepost(model, images: list[Path], runs: int, rows: int, raw: bool) -> dict:
    """Preprocess / postprocess ms over real images (trained-like heads; raw random: optional)."""
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.postprocess import postprocess
    from yolo_sfn.core.preprocess import to_network_input

    size = tuple(model.meta.input_size)
    decoded = [load_image_file(p) for p in images]
    cases = []
    for rgb in decoded:
        batch, tr = to_network_input(rgb, size)
        heads = model.run(batch)
        cases.append((rgb, tr, heads, trained_like_heads(heads, model.meta, rows)))
    t_decode, t_pre, t_post_raw, t_post = [], [], [], []
    n_raw, n_shift = [], []
    for i in range(runs):
        p = images[i % len(images)]
        rgb, tr, heads, shifted = cases[i % len(cases)]
        t0 = time.perf_counter()
        load_image_file(p)
        t1 = time.perf_counter()
        to_network_input(rgb, size)
        t2 = time.perf_counter()
        d = postprocess(shifted, model.meta, tr)
        t3 = time.perf_counter()
        t_decode.append(t1 - t0)
        t_pre.append(t2 - t1)
        t_post.append(t3 - t2)
        n_shift.append(len(d))
        if raw and i == 0:  # raw random heads: ~500k candidates, minutes per image
            t4 = time.perf_counter()
            n_raw.append(len(postprocess(heads, model.meta, tr)))
            t_post_raw.append(time.perf_counter() - t4)
    return {
        "decode": machine.summary_ms(t_decode),
        "preprocess": machine.summary_ms(t_pre),
        "postprocess": machine.summary_ms(t_post),
        "postprocess_raw_random": machine.summary_ms(t_post_raw),
        "detections_shifted_median": float(np.median(n_shift)),
        "detections_raw_median": float(np.median(n_raw)) if n_raw else None,
        "trained_like_rows": rows,
    }


def main() -> int:
    ap = report.script_parser(__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--cfg", default="yolov4")
    ap.add_argument("--rows", type=int, default=50, help="object rows in the trained-like heads")
    ap.add_argument(
        "--settle",
        type=float,
        default=0.25,
        help="seconds of idle before each timed run, so the previous engine's spinning worker "
        "threads do not steal the cores (0: back to back)",
    )
    ap.add_argument(
        "--raw-random-post",
        action="store_true",
        help="also time postprocess once on the raw random heads (minutes)",
    )
    args = ap.parse_args()

    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.core.runtime import Model

    info = machine.machine_info()
    cfg, weights = built_models.random_darknet(args.cfg, args.size)
    tfl = built_models.random_model(args.cfg, args.size, "fp32")
    images = pipeline.find_images()
    model = Model.load(tfl, threads=args.threads)
    net, names = rival.opencv_net(cfg, weights, args.threads)
    batch, _ = to_network_input(load_image_file(images[0]), (args.size, args.size))

    sg_before = measure_sgemm(args.threads)
    both = rival.side_by_side(
        model, net, names, batch, runs=args.runs, settle=args.settle, threads=args.threads
    )
    sg_after = measure_sgemm(args.threads)
    r = rival.ratios(both, rival.conv_gflop(cfg, (args.size, args.size)))
    pp = prepost(model, images, max(args.runs, 2 * len(images)), args.rows, args.raw_random_post)

    lite, cv = both["litert"], both["opencv"]
    gflops, sg_gflops = both["sgemm_gflops"], both["sgemm_interleaved_gflops"]
    limit_ms = r["sgemm_limit_ms"]
    share = (pp["preprocess"]["median_ms"] + pp["postprocess"]["median_ms"]) / lite["median_ms"]
    share_dec = share + pp["decode"]["median_ms"] / lite["median_ms"]
    print(
        f"{args.cfg}-{args.size} fp32, random weights; threads={args.threads}; {info['cpu']}, "
        f"load {info['loadavg_1m']:.2f}, {info['date_utc']}; LiteRT {info['ai_edge_litert']}"
    )
    print(
        report.table(
            ["engine", "median ms", "min ms", "runs"],
            [
                ["LiteRT (Model.run)", lite["median_ms"], lite["min_ms"], lite["n"]],
                ["OpenCV DNN", cv["median_ms"], cv["min_ms"], cv["n"]],
                [
                    f"sgemm limit ({r['gflop']:.1f} GFLOP @ {gflops:.0f} GFLOP/s)",
                    limit_ms,
                    None,
                    None,
                ],
            ],
        )
    )
    blas = sg_before["openblas"]
    print(
        f"sgemm n=2048: interleaved median {gflops:.0f} GFLOP/s (best {max(sg_gflops):.0f}); "
        f"separate runs median {sg_before['median_gflops']:.0f} / {sg_after['median_gflops']:.0f} "
        f"GFLOP/s before/after "
        f"(best {sg_before['best_gflops']:.0f} / {sg_after['best_gflops']:.0f}); "
        f"OpenBLAS kernel {blas['corename']}, {blas['threads']} threads"
    )
    print(
        report.table(
            ["stage (real images)", "median ms", "min ms"],
            [
                ["decode (not in target)", pp["decode"]["median_ms"], pp["decode"]["min_ms"]],
                ["preprocess", pp["preprocess"]["median_ms"], pp["preprocess"]["min_ms"]],
                [
                    f"postprocess (trained-like heads, {args.rows} rows)",
                    pp["postprocess"]["median_ms"],
                    pp["postprocess"]["min_ms"],
                ],
                [
                    "postprocess (raw random heads)",
                    pp["postprocess_raw_random"]["median_ms"],
                    pp["postprocess_raw_random"]["min_ms"],
                ],
            ],
            floatfmt="{:.2f}",
        )
    )
    print(
        f"detections per image: {pp['detections_shifted_median']:.0f} trained-like, "
        f"{pp['detections_raw_median']} raw random; pre+post share incl. decode {share_dec:.3f}"
    )
    targets = [
        report.Target(
            "LiteRT / OpenCV DNN time", lite["median_ms"] / cv["median_ms"], "<=", 0.85, "x"
        ),
        report.Target("sgemm limit / LiteRT time", limit_ms / lite["median_ms"], ">=", 0.75),
        report.Target("(pre + post) / infer", share, "<", 0.10),
    ]
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "machine": info,
                    "threads": args.threads,
                    "litert": lite,
                    "opencv": cv,
                    "sgemm": [sg_before, sg_after],
                    "sgemm_interleaved_gflops": sg_gflops,
                    "sgemm_limit_ms": limit_ms,
                    "prepost": pp,
                    "targets": [t.to_dict() for t in targets],
                },
                indent=2,
            )
        )
    return report.verdict(targets)


if __name__ == "__main__":
    sys.exit(main())
