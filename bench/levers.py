"""Levers for YOLOv4-416 fp32 speed, load time and memory, measured side by side.

Steady state (one process, variants alternate run by run, same real input):
  * Model.run at 2 threads (the project runtime, XNNPACK by default) and at 1 thread
  * Interpreter without the default XNNPACK delegate (BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  * an fp16-weights conversion (``--precision fp16``)
  * a conversion with mish written as ``x * n / (n + 2)``, ``n = e^x (e^x + 2)`` (x clamped
    at 20 inside exp) instead of ``x * tanh(softplus(x))``: built with the project converter,
    its ``ACTIVATIONS["mish"]`` swapped for this process only (a proposal, not the default)
Fresh processes (load time, first inference, peak RSS):
  * ``Interpreter(model_content=bytes)`` (what Model.load does) vs ``model_path=`` (mmap)
  * LiteRT ``CompiledModel`` with an XNNPACK weight cache file (second process reuses it)
Informational: always exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from yolo_sfn.bench import built_models, machine, pipeline, report

EXP_MISH_NAME = "yolov4-416-seed0-fp32-expmish.tflite"


def exp_mish(tf, x):
    e = tf.math.exp(tf.minimum(x, 20.0))
    n = e * (e + 2.0)
    return x * n / (n + 2.0)


def exp_mish_model() -> Path:
    """The random YOLOv4-416 with the exp-form mish (cached)."""
    from yolo_sfn.convert import convert, graph

    out = built_models.CACHE / EXP_MISH_NAME
    if out.exists():
        return out
    cfg, weights = built_models.random_darknet("yolov4", 416)
    saved = graph.ACTIVATIONS["mish"]
    graph.ACTIVATIONS["mish"] = exp_mish
    try:
        convert(cfg, weights, out, precision="fp32", name="yolov4-416-expmish")
    finally:
        graph.ACTIVATIONS["mish"] = saved
    return out


CHILD = r"""
import json, sys, time
t0 = time.time()
import numpy as np
mode, path, threads, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
x = np.load(sys.argv[5]).astype(np.float32) / 255
t1 = time.time()
if mode == "compiled":
    import ai_edge_litert.compiled_model as cmod
    opts = cmod.Options(cmod.HardwareAccelerator.CPU, cpu_options=cmod.CpuOptions(
        num_threads=threads, xnnpack_weight_cache_path=cache))
    cm = cmod.CompiledModel.from_file(path, options=opts)
    ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
    t2 = time.time()
    ins[0].write(x); cm.run_by_index(0, ins, outs)
else:
    from ai_edge_litert.interpreter import Interpreter
    if mode == "content":
        it = Interpreter(model_content=open(path, "rb").read(), num_threads=threads)
    else:
        it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    t2 = time.time()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x); it.invoke()
t3 = time.time()
rss = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2, "peak_rss_mb": rss}))
"""


def fresh(mode: str, path: Path, threads: int, npy: Path, cache: str = "") -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(threads), cache, str(npy)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])


def steady(variants: dict, batch: np.ndarray, runs: int) -> dict:
    for fn in variants.values():
        fn(batch)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn(batch)
            times[k].append(time.perf_counter() - t)
    return {k: machine.summary_ms(v) for k, v in times.items()}


def main() -> int:
    ap = report.script_parser(__doc__)
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.core.runtime import Model

    info = machine.machine_info()
    fp32 = built_models.random_model("yolov4", 416, "fp32")
    fp16 = built_models.random_model("yolov4", 416, "fp16")
    expm = exp_mish_model()
    batch, _ = to_network_input(load_image_file(pipeline.find_images()[0]), (416, 416))
    npy = built_models.CACHE / "levers-input.npy"
    np.save(npy, batch)

    nodel = Interpreter(
        model_path=str(fp32),
        num_threads=args.threads,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    nodel.allocate_tensors()
    nd_in = nodel.get_input_details()[0]["index"]
    xf = batch.astype(np.float32) / np.float32(255)

    def run_nodel(_b):
        nodel.set_tensor(nd_in, xf)
        nodel.invoke()

    variants = {
        f"fp32 Model.run, {args.threads} threads (baseline)": Model.load(
            fp32, threads=args.threads
        ).run,
        "fp32 Model.run, 1 thread": Model.load(fp32, threads=1).run,
        "fp16 weights (XNNPACK)": Model.load(fp16, threads=args.threads).run,
        "fp32, exp-form mish": Model.load(expm, threads=args.threads).run,
        "fp32, no XNNPACK (builtin kernels)": run_nodel,
    }
    st = steady(variants, batch, args.runs)
    base = next(iter(st.values()))["median_ms"]
    print(
        f"YOLOv4-416 (random weights) levers, {args.runs} alternating runs; {info['cpu']}, "
        f"load {info['loadavg_1m']:.2f}, {info['date_utc']}"
    )
    print(
        report.table(
            ["variant", "median ms", "min ms", "vs baseline"],
            [[k, v["median_ms"], v["min_ms"], v["median_ms"] / base] for k, v in st.items()],
            floatfmt="{:.2f}",
        )
    )
    sizes = {p.name: p.stat().st_size / 2**20 for p in (fp32, fp16, expm)}
    print("file MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items()))
    variants.clear()

    cache = built_models.CACHE / "xnnpack-weights.cache"
    if cache.exists():
        cache.unlink()
    fr = {
        "Interpreter(model_content=bytes) [Model.load today]": fresh(
            "content", fp32, args.threads, npy
        ),
        "Interpreter(model_path=...) (mmap)": fresh("path", fp32, args.threads, npy),
        "CompiledModel + XNNPACK weight cache, cold cache": fresh(
            "compiled", fp32, args.threads, npy, str(cache)
        ),
        "CompiledModel + XNNPACK weight cache, warm cache": fresh(
            "compiled", fp32, args.threads, npy, str(cache)
        ),
    }
    print(
        report.table(
            ["fresh process", "load s", "1st infer s", "peak RSS MiB"],
            [[k, v["load_s"], v["first_s"], v["peak_rss_mb"]] for k, v in fr.items()],
            floatfmt="{:.3f}",
        )
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"machine": info, "steady": st, "fresh": fr, "file_mb": sizes}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
