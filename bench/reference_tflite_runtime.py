"""Reference: the same YOLOv4-416 fp32 model on tflite-runtime 2.14 vs LiteRT (ai-edge-litert).

tflite-runtime 2.14 needs numpy<2, so it lives in its own virtual environment
(``.cache/venv-ref``, created on first use with ``pip install tflite-runtime==2.14.0
'numpy<2'``; never the project venv). The child there runs the project's own
``yolo_sfn.core.runtime.Model`` from ``src/`` (PYTHONPATH), which falls back to
``tflite_runtime`` when ai_edge_litert is absent, so both sides run identical Python code.
Runs alternate between the two processes (same background load). Informational: prints the
ratio, exits 0 unless the reference environment cannot be built or run.
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

REF_VENV = pipeline.REPO_ROOT / ".cache" / "venv-ref"
REF_PACKAGES = ("tflite-runtime==2.14.0", "numpy<2")

CHILD = r"""
import json, sys, time
import numpy as np
from yolo_sfn.core.runtime import RUNTIME, Model
m = Model.load(sys.argv[1], threads=int(sys.argv[2]))
x = np.load(sys.argv[3])
m.run(x)
import tflite_runtime
print(json.dumps({"runtime": RUNTIME, "version": tflite_runtime.__version__}), flush=True)
for _ in sys.stdin:
    t = time.perf_counter(); m.run(x); print(time.perf_counter() - t, flush=True)
"""


def ensure_ref_venv() -> Path:
    py = REF_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *REF_PACKAGES], check=True)
    return py


def main() -> int:
    ap = report.script_parser(__doc__)
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args()
    from yolo_sfn.core.image import load_image_file
    from yolo_sfn.core.preprocess import to_network_input
    from yolo_sfn.core.runtime import Model

    info = machine.machine_info()
    py = ensure_ref_venv()
    tfl = built_models.random_model("yolov4", 416, "fp32")
    batch, _ = to_network_input(load_image_file(pipeline.find_images()[0]), (416, 416))
    npy = built_models.CACHE / "reference-input.npy"
    np.save(npy, batch)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = str(pipeline.REPO_ROOT / "src")
    child = subprocess.Popen(
        [str(py), "-c", CHILD, str(tfl), str(args.threads), str(npy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    ref_info = json.loads(child.stdout.readline())
    model = Model.load(tfl, threads=args.threads)
    model.run(batch)
    t_lite, t_ref = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        model.run(batch)
        t_lite.append(time.perf_counter() - t)
        child.stdin.write("go\n")
        child.stdin.flush()
        t_ref.append(float(child.stdout.readline()))
    child.stdin.close()
    child.wait(timeout=60)
    lite, ref = machine.summary_ms(t_lite), machine.summary_ms(t_ref)
    print(
        f"YOLOv4-416 fp32 (random weights), threads={args.threads}; {info['cpu']}, "
        f"load {info['loadavg_1m']:.2f}, {info['date_utc']}"
    )
    print(
        report.table(
            ["runtime", "median ms", "min ms", "runs"],
            [
                [
                    f"ai-edge-litert {info['ai_edge_litert']}",
                    lite["median_ms"],
                    lite["min_ms"],
                    lite["n"],
                ],
                [
                    f"{ref_info['runtime']} {ref_info['version']}",
                    ref["median_ms"],
                    ref["min_ms"],
                    ref["n"],
                ],
            ],
        )
    )
    ratio = lite["median_ms"] / ref["median_ms"]
    print(f"LiteRT / tflite-runtime time: {ratio:.3f}x (informational)")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "machine": info,
                    "litert": lite,
                    "tflite_runtime": ref,
                    "ref": ref_info,
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
