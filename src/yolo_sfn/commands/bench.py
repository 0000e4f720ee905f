"""``yolo-sfn bench``: how fast a model is here, and what it would cost on Lambda.

Measures, on real images (testdata/images or ``--images``):
  * cold load: a fresh process (python start + imports + model load + first inference),
  * first inference and steady-state median/min per stage (decode, preprocess, infer,
    postprocess), images/s,
  * peak RSS of the infer stage (in the fresh process),
  * a Lambda cost estimate per 1,000 images (yolo_sfn.bench.cost): as deployed, one invoke
    per stage (Preprocess, Infer, Postprocess, Store) per batch of BatchSize images (the
    template's default, or ``--batch-size``) with each stage at its template MemorySize; and
    with every stage at each of ``--memory-sizes``,
  * with ``--vs-opencv``: OpenCV DNN on the darknet cfg + weights the model was converted from
    (the sidecar's source, or ``--darknet``), same input and threads, runs alternating with
    the model's, and the machine's sgemm-bound limit (conv GFLOP / numpy float32 matmul
    GFLOP/s, measured interleaved): the two ratios a user compares (yolo_sfn.bench.rival).
Heavy imports happen inside ``run`` (this module is imported by ``yolo-sfn --help``).
"""

from __future__ import annotations

import argparse
import json
import os

from yolo_sfn.commands.checks import int_in, path_arg
from yolo_sfn.contract import RESIZE_MODES
from yolo_sfn.errors import InputValidationError, LocalEngineError

SETTLE_S = 0.25  # --settle default


def register(sub: argparse._SubParsersAction) -> None:
    from yolo_sfn.bench.cost import DEFAULT_MEMORY_SIZES
    from yolo_sfn.workflow.messages import MAX_BATCH_ITEMS  # template.yaml BatchSize MaxValue

    p = sub.add_parser(
        "bench",
        help="measure a model: cold load, per-stage times, RSS, Lambda cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        type=path_arg,
        help=".tflite with its .tflite.json sidecar (default: the demo yolov3-tiny)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="interpreter threads (default: INFER_THREADS, else all cores)",
    )
    p.add_argument("--runs", type=int, default=20, help="steady-state images timed (default 20)")
    p.add_argument("--images", nargs="+", help="image files or folders (default testdata/images)")
    p.add_argument("--resize", choices=RESIZE_MODES, default="stretch")
    p.add_argument(
        "--cold-repeats", type=int, default=3, help="fresh processes for cold load (default 3)"
    )
    sizes = ",".join(map(str, DEFAULT_MEMORY_SIZES))
    p.add_argument(
        "--memory-sizes",
        default=sizes,
        help="Lambda memory sizes (MB) for the cost estimate with every stage at one size "
        f"(default {sizes})",
    )
    p.add_argument(
        "--batch-size",
        type=int_in(1, MAX_BATCH_ITEMS),
        help="images per Distributed Map child for the cost estimate, as yolo-sfn run "
        "--batch-size (default: template.yaml's BatchSize default)",
    )
    p.add_argument("--project", type=path_arg, help="project root holding template.yaml")
    p.add_argument(
        "--vs-opencv",
        action="store_true",
        help="also time OpenCV DNN (darknet importer) on the same network and input, and the "
        "sgemm-bound limit, alternating with the model's runs",
    )
    p.add_argument(
        "--darknet",
        nargs=2,
        type=path_arg,
        metavar=("CFG", "WEIGHTS"),
        help="for --vs-opencv: the darknet files the model was converted from (default: the "
        "paths its sidecar records; checked against the sidecar's sha256s)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        help="for --vs-opencv: idle seconds before each timed run, so the previous engine's "
        "spin-waiting threads do not steal the cores (default 0.25)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=run)


def measure(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from yolo_sfn.bench import cost, machine, pipeline
    from yolo_sfn.core.runtime import Model, default_threads

    _check_args(args)
    try:
        sizes = cost.parse_memory_sizes(args.memory_sizes)
    except ValueError as e:
        raise InputValidationError(f"--memory-sizes {args.memory_sizes!r}: {e}") from None
    deployment = deployed_design(args.project, args.batch_size)
    if args.model:
        model_path = Path(args.model)
    else:
        from yolo_sfn.bench.built_models import demo_model

        model_path = demo_model()
    images = pipeline.find_images(args.images)
    threads = default_threads() if args.threads is None else args.threads
    # loaded here first: a bad model is one clean error, not a failed fresh-process probe
    model = Model.load(model_path, threads=threads)
    rival_source = None
    if args.vs_opencv:  # checked before minutes of measuring, not after
        from yolo_sfn.bench import rival

        rival_source = rival.darknet_source(model_path, model.meta, *(args.darknet or (None, None)))
    cold = pipeline.cold_start(
        model_path, images, threads=threads, repeats=args.cold_repeats, runs=len(images)
    )
    steady = pipeline.stage_times(model, images, runs=args.runs, resize=args.resize)
    batches = list(_inputs(model, images, args.resize))
    infer_n = steady["infer"]["median_ms"]
    if threads > 1:
        one = Model.load(model_path, threads=1)
        infer_1t = machine.median_ms(pipeline.infer_only_ms(one, batches, max(3, args.runs // 4)))
        del one
    else:
        infer_1t = infer_n
    eff = cost.parallel_efficiency(infer_1t, infer_n, threads)
    times = cost.StageTimes(
        preprocess_ms=steady["decode"]["median_ms"] + steady["preprocess"]["median_ms"],
        infer_1t_ms=infer_1t,
        postprocess_ms=steady["postprocess"]["median_ms"],
        infer_efficiency=eff,
    )
    vs = None
    if rival_source is not None:
        vs = _vs_opencv(model, rival_source, batches[0], args, threads)
    return {
        "model": {
            "path": str(model_path),
            "name": model.meta.name,
            "precision": model.meta.precision,
            "input_size": list(model.meta.input_size),
            "file_mb": os.path.getsize(model_path) / 2**20,
        },
        "machine": machine.machine_info(),
        "threads": threads,
        "cold": {k: v for k, v in cold.items() if k != "probes"},
        "steady": steady,
        "infer_1thread_median_ms": infer_1t,
        "parallel_efficiency": eff,
        "cost": {
            **cost.bench_estimate(times, sizes, deployment),
            "batch_size_from": "--batch-size" if args.batch_size else BATCH_SIZE_FROM_TEMPLATE,
        },
        "vs_opencv": vs,
    }


BATCH_SIZE_FROM_TEMPLATE = "template.yaml BatchSize default"


def deployed_design(project=None, batch_size: int | None = None):
    """``cost.Deployment`` of template.yaml with its default parameters: ``BatchSize`` (or
    ``batch_size``) and each image stage's ``MemorySize``, as ``yolo-sfn run`` deploys it."""
    from yolo_sfn.bench.cost import Deployment
    from yolo_sfn.contract import IMAGE_STAGES
    from yolo_sfn.local.template import find_project_root, read_template

    tpl = read_template(find_project_root(project) / "template.yaml")
    if batch_size is None:
        batch_size = _default_value(tpl, {"Ref": "BatchSize"}, "BatchSize")
    memory = {
        st: _default_value(tpl, tpl.functions[st].memory,
                           f"{tpl.functions[st].logical_id} MemorySize")
        for st in IMAGE_STAGES
    }
    try:
        return Deployment(batch_size, memory)
    except ValueError as e:
        raise LocalEngineError(f"{tpl.path}: {e}") from None


def _default_value(tpl, value, what: str) -> int:
    """A template number as deployed with default parameters: a literal, or ``!Ref`` to a
    parameter with a numeric ``Default``."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        if value["Ref"] not in tpl.parameters:
            raise LocalEngineError(f"{tpl.path}: no parameter {value['Ref']} (for {what})")
        value = tpl.parameters[value["Ref"]].get("Default")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LocalEngineError(
            f"{tpl.path}: {what} is {value!r}, not a number or a parameter with a numeric Default"
        ) from None


def _check_args(args: argparse.Namespace) -> None:
    """Every bad option is an error naming it, before any measuring."""
    for name, value in (("--runs", args.runs), ("--cold-repeats", args.cold_repeats),
                        ("--threads", args.threads)):
        if value is not None and value < 1:
            raise InputValidationError(f"{name} must be >= 1, got {value}")
    if not 0 <= args.settle <= 60:
        raise InputValidationError(f"--settle must be 0..60 seconds, got {args.settle}")
    for name, given in (("--darknet", args.darknet), ("--settle", args.settle != SETTLE_S)):
        if given and not args.vs_opencv:
            raise InputValidationError(f"{name} is only used with --vs-opencv")


def _vs_opencv(model, source, batch, args, threads: int) -> dict:
    import cv2

    from yolo_sfn.bench import rival

    cfg, weights = source
    size = tuple(model.meta.input_size)
    net, names = rival.opencv_net(cfg, weights, threads, size)
    both = rival.side_by_side(
        model, net, names, batch, runs=max(3, args.runs), settle=args.settle, threads=threads
    )
    return {
        **both,
        **rival.ratios(both, rival.conv_gflop(cfg, size)),
        "cfg": str(cfg),
        "weights": str(weights),
        "opencv_version": cv2.__version__,
        "settle_s": args.settle,
        "winograd_layers": int(model.meta.source.get("winograd_layers") or 0),
    }


def _inputs(model, images, resize):
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input

    for p in images:
        yield to_network_input(load_image_file(p), tuple(model.meta.input_size), resize)[0]


def render(r: dict) -> str:
    from yolo_sfn.bench.report import table

    m, c, s, mach, co = r["model"], r["cold"], r["steady"], r["machine"], r["cost"]
    lines = [
        f"model   {m['name']} ({m['precision']}, {m['input_size'][0]}x{m['input_size'][1]}, "
        f"{m['file_mb']:.1f} MiB) {m['path']}",
        f"machine {mach['cpu']}, {mach['cpus']} cpus, load {float(mach['loadavg_1m']):.2f}, "
        f"{mach['date_utc']}; threads={r['threads']}",
        "",
        "cold load (fresh process: python start + imports + model load + first inference)",
        table(
            ["run", "total s", "python start s", "import s", "load s", "first infer s"],
            [
                [i + 1, t, p, im, lo, fi]
                for i, (t, p, im, lo, fi) in enumerate(
                    zip(
                        c["cold_total_s"],
                        c["interpreter_start_s"],
                        c["import_s"],
                        c["load_s"],
                        c["first_infer_s"],
                        strict=True,
                    )
                )
            ],
            floatfmt="{:.3f}",
        ),
        f"infer-stage peak RSS {c['peak_rss_mb']:.0f} MiB (model file {c['model_mb']:.0f} MiB)",
        "",
        f"steady state: {s['runs']} images after a warm-up pass over {s['images']} "
        f"(first inference {s['first_infer_ms']:.1f} ms)",
        table(
            ["stage", "median ms", "min ms"],
            [
                [st, s[st]["median_ms"], s[st]["min_ms"]]
                for st in ("decode", "preprocess", "infer", "postprocess", "total")
            ],
        ),
        f"images/s {s['images_per_s']:.2f}; "
        f"infer at 1 thread {r['infer_1thread_median_ms']:.1f} ms "
        f"(parallel efficiency {r['parallel_efficiency']:.2f} at {r['threads']} threads)",
        *_candidate_note(s),
        "",
        *_render_cost(co),
        "arm64 times are assumed equal to x86 (not measured; Graviton speed differs).",
    ]
    if r.get("vs_opencv"):
        lines += ["", *_render_vs(r["vs_opencv"], m, r["threads"])]
    return "\n".join(lines)


def _render_cost(co: dict) -> list[str]:
    """The deployed estimate (each stage at its MemorySize) and the one-memory-size rows."""
    from yolo_sfn.bench.report import table

    dep = co["deployed"]
    usd, req = dep["usd_per_1000"], dep["request_usd_per_1000"]
    return [
        f"Lambda cost per 1,000 images as deployed: {co['batch_size']} images per batch "
        f"({co['batch_size_from']}), {co['invocations_per_batch']} invocations per batch "
        f"(Preprocess, Infer, Postprocess, Store) = {co['invocations_per_image']:.4g} "
        "invocations per image; each stage at its template MemorySize; "
        f"x86 ${co['prices']['x86_64']}/GB-s, arm64 ${co['prices']['arm64']}/GB-s, "
        f"${co['price_per_request'] * 1e6:.2f} per 1M requests",
        table(
            ["stage", "memory MB", "vCPU", "threads", "est ms/image", "GB-s"],
            [[st["stage"], st["memory_mb"], st["vcpus"], st["threads"],
              st["est_ms_per_image"], st["gb_s_per_1000"]] for st in dep["stages"]]
            + [["total", None, None, None, dep["est_ms_per_image"], dep["gb_s_per_1000"]]],
            floatfmt="{:.4g}",
        ),
        f"x86 USD {usd['x86_64']:.4g}, arm64 USD {usd['arm64']:.4g} per 1,000 images (of "
        f"which requests {req:.4g}); store not measured (S3 PUTs and a DynamoDB batch write): "
        "its requests are priced, its GB-s are not",
        "",
        f"Lambda cost per 1,000 images with every stage at one memory size (--memory-sizes; "
        f"{co['invocations_per_image']:.4g} invocations per image as above)",
        table(
            ["memory MB", "vCPU", "threads", "est ms/image", "GB-s", "x86 USD", "arm64 USD"],
            [
                [
                    row["memory_mb"],
                    row["vcpus"],
                    row["threads"],
                    row["est_ms_per_image"],
                    row["gb_s_per_1000"],
                    row["usd_per_1000"]["x86_64"],
                    row["usd_per_1000"]["arm64"],
                ]
                for row in co["rows"]
            ],
            floatfmt="{:.4g}",
        ),
        co["rows_note"],
        co["price_note"],
        co["scaling_note"],
        co["scope_note"],
    ]


def _candidate_note(s: dict) -> list[str]:
    """A line when post-processing hit its pre-NMS cap: its time is then that of the cap."""
    cap, counts = s.get("candidate_cap"), s.get("candidates") or {}
    capped = sorted(n for n in counts.values() if cap is not None and n > cap)
    if not capped:
        return []
    return [
        f"note: {len(capped)} of {len(counts)} images have more score >= threshold candidates "
        f"than the pre-NMS cap ({capped[len(capped) // 2]:,} median vs {cap:,}), as random or "
        "untrained weights do (a trained detector has tens at score 0.25): postprocess time "
        "here is NMS over the capped set, not a trained model's"
    ]


def _render_vs(v: dict, m: dict, threads: int) -> list[str]:
    from yolo_sfn.bench.report import table

    blas = v["openblas"]
    lines = [
        f"vs OpenCV DNN {v['opencv_version']} (darknet importer; same network, same input, "
        f"threads={threads}; {v['litert']['n']} alternating runs, {v['settle_s']} s settle)",
        f"  {v['cfg']} + {v['weights']}",
        table(
            ["engine", "median ms", "min ms"],
            [
                [f"this model ({m['precision']})", v["litert"]["median_ms"], v["litert"]["min_ms"]],
                ["OpenCV DNN (fp32)", v["opencv"]["median_ms"], v["opencv"]["min_ms"]],
                [
                    f"sgemm limit ({v['gflop']:.1f} GFLOP @ {v['sgemm_gflops']:.0f} GFLOP/s)",
                    v["sgemm_limit_ms"],
                    None,
                ],
            ],
        ),
        f"this model / OpenCV time {v['litert_over_opencv']:.3f}x; "
        f"sgemm limit / this model's time {v['limit_over_litert']:.3f} "
        f"(sgemm: numpy float32 2048^2 matmul, OpenBLAS {blas.get('corename')}, "
        f"{blas.get('threads')} threads, median of the interleaved runs)",
    ]
    if v["winograd_layers"]:
        lines.append(
            f"note: {v['winograd_layers']} of this model's 3x3 convolutions run as Winograd "
            "F(2x2,3x3), fewer FLOPs than the darknet count the limit uses, so a ratio above "
            "1 is possible (model convert --no-winograd for the direct convolution)"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0
