"""After ``sam build``: each function's unzipped size (its code + every layer it gets) against
Lambda's 262,144,000 B limit, and, given a Python 3.12 interpreter, an import check of every
handler with ONLY its own layers (+ boto3, which the python3.12 runtime provides).

    python layers/check_layers.py                       # sizes (.aws-sam/build)
    python layers/check_layers.py --python python3.12 --runtime-dir DIR
        # DIR: boto3 for 3.12, e.g. `python3.12 -m pip install --target DIR boto3`

Exits non-zero when a function is over the limit, a handler does not import, or a stage
imports a module it must not (Infer: cv2; Postprocess: cv2, LiteRT; Plan/Store/Summarize: numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from yolo_sfn.local.template import load_cfn_yaml
from yolo_sfn.local.workers import merge_layers

LIMIT = 262_144_000  # function + layers, unzipped
# What each stage imports for its work (the handlers import the rest) and must never import.
STAGE_IMPORTS = {
    "PlanFunction": ([], ["numpy", "cv2", "ai_edge_litert"]),
    "PreprocessFunction": (["yolo_sfn.core.image", "yolo_sfn.core.preprocess"],
                           ["ai_edge_litert"]),
    "InferFunction": (["yolo_sfn.core.runtime"], ["cv2"]),
    "PostprocessFunction": (["yolo_sfn.core.postprocess", "yolo_sfn.core.preprocess"],
                            ["cv2", "ai_edge_litert"]),
    "StoreFunction": ([], ["numpy", "cv2", "ai_edge_litert"]),
    "SummarizeFunction": ([], ["numpy", "cv2", "ai_edge_litert"]),
}


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def function_layers(build: Path) -> dict[str, tuple[Path, list[tuple[str, Path]]]]:
    """Function logical id -> (its build dir, [(layer id, layer build dir)] in Lambda order)."""
    doc = load_cfn_yaml(build / "template.yaml")
    res = doc["Resources"]
    glob = ((doc.get("Globals") or {}).get("Function") or {}).get("Layers", [])
    out = {}
    for lid, r in res.items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        refs = [*glob, *r["Properties"].get("Layers", [])]
        layers = [(x["Ref"], build / res[x["Ref"]]["Properties"]["ContentUri"]) for x in refs]
        out[lid] = (build / r["Properties"]["CodeUri"], layers)
    return out


def sizes(build: Path) -> tuple[list[dict], bool]:
    rows, ok = [], True
    for lid, (code, layers) in function_layers(build).items():
        parts = {"function": tree_bytes(code), **{n: tree_bytes(p) for n, p in layers}}
        total = sum(parts.values())
        ok &= total <= LIMIT
        rows.append({"function": lid, "layers": [n for n, _ in layers], "parts": parts,
                     "total": total, "headroom": LIMIT - total})
    return rows, ok


CHECK = r"""
import importlib.util, json, sys
code, extra, forbidden = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
spec = importlib.util.spec_from_file_location("app", code + "/app.py")
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
for m in extra:
    __import__(m)
bad = sorted(m for m in forbidden if m in sys.modules)
third = sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "cv2", "ai_edge_litert",
               "aws_lambda_powertools", "yolo_sfn", "boto3"})
print(json.dumps({"handler": callable(app.handler), "forbidden_loaded": bad, "loaded": third,
                  "paths": {m: getattr(sys.modules[m], "__file__", None) for m in third}}))
sys.exit(1 if bad or not callable(app.handler) else 0)
"""


def import_check(build: Path, python: str, runtime_dir: Path) -> bool:
    """Merge each function's layers into one /opt/python (Lambda's order: later layers win),
    then import its handler in ``python -I -S`` with sys.path = code, /opt/python, runtime."""
    ok = True
    for lid, (code, layers) in function_layers(build).items():
        with tempfile.TemporaryDirectory() as opt:
            merged = Path(opt) / "python"
            merge_layers([layer for _, layer in layers], merged)
            extra, forbidden = STAGE_IMPORTS.get(lid, ([], []))
            paths = [str(code), str(merged), str(runtime_dir)]
            args = [str(code), json.dumps(extra), json.dumps(forbidden)]
            boot = (f"import sys; sys.path[:0] = {paths!r}; sys.argv = ['check', *{args!r}]; "
                    "exec(compile(" + repr(CHECK) + ", 'check', 'exec'))")
            env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1",
                   "POWERTOOLS_SERVICE_NAME": "check"}
            proc = subprocess.run([python, "-I", "-S", "-c", boot], capture_output=True,
                                  text=True, env=env)
            line = (proc.stdout.strip().splitlines() or [""])[-1]
            status = "ok" if proc.returncode == 0 else "FAIL"
            ok &= proc.returncode == 0
            print(f"{lid:20s} {status}  {line or proc.stderr.strip()[-600:]}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=".aws-sam/build", type=Path)
    ap.add_argument("--python", help="a Python 3.12 interpreter: also import-check the handlers")
    ap.add_argument("--runtime-dir", type=Path, help="boto3 for that interpreter (Lambda's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows, ok = sizes(args.build_dir)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'function':20s} {'unzipped B':>12s} {'of limit':>8s} {'headroom B':>12s}  parts")
        for r in rows:
            parts = ", ".join(f"{k} {v:,}" for k, v in r["parts"].items())
            print(f"{r['function']:20s} {r['total']:>12,} {r['total'] / LIMIT:>8.1%} "
                  f"{r['headroom']:>12,}  {parts}")
    if args.python:
        if not args.runtime_dir:
            ap.error("--python needs --runtime-dir (boto3 installed for that interpreter)")
        ok &= import_check(args.build_dir, args.python, args.runtime_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
