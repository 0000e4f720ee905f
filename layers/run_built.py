"""After ``sam build``: run one small batch through the BUILT functions (``.aws-sam/build``).

Each function runs in its own worker process (a warm container) under a Python 3.12
interpreter with ONLY its own layers' ``python/`` folders on ``sys.path``, plus boto3 (which the
Lambda runtime provides), against the local engine's moto backends (moto's server in this
process). The batch: ``testdata/images`` plus one file that is not an image, the demo model.

    python layers/run_built.py [--python python3.12] [--runtime-dir .cache/lambda-py312]

First ``check_layers.py``'s import check (each handler imports with only its layers, and no
stage loads a module it must not). Exits non-zero when that fails, a handler cannot import or
run, a worker loads a module from outside its layers, or the summary does not account for
every image: each good image succeeded, the broken one failed at preprocess. Without ``--python``,
finds ``python3.12`` on PATH or under pyenv; the runtime dir gets boto3 on first use
(``python3.12 -m pip install --target DIR boto3``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from check_layers import function_layers, import_check

from yolo_sfn.local.template import FUNCTION_IDS, load_cfn_yaml
from yolo_sfn.local.workers import WORKER, BuiltFunction, WorkerPool

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "broken.jpg"
STAGES = tuple(FUNCTION_IDS)


def find_python312(given: str | None) -> str | None:
    """``given``, else python3.12 on PATH, else the newest pyenv 3.12 (None: none found)."""
    candidates = [given] if given else [shutil.which("python3.12")]
    if not given:
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        candidates += [str(p) for p in sorted((root / "versions").glob("3.12*/bin/python3.12"),
                                               reverse=True)]
    for python in filter(None, candidates):
        try:
            out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 12)":
            return python
    return None


def ensure_boto3(python: str, runtime_dir: Path) -> None:
    """boto3 for the 3.12 interpreter in ``runtime_dir`` (installed once, then reused)."""
    if (runtime_dir / "boto3").is_dir():
        return
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "--target", str(runtime_dir), "boto3"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (runtime_dir / "boto3").is_dir():
        raise SystemExit(f"installing boto3 for {python} into {runtime_dir} failed:\n"
                         f"{proc.stdout}{proc.stderr}")


def built_functions(build: Path) -> dict:
    """stage -> BuiltFunction of the built template."""

    doc = load_cfn_yaml(build / "template.yaml")
    default = ((doc.get("Globals") or {}).get("Function") or {}).get("Handler")
    by_id = function_layers(build)
    out = {}
    for stage, lid in FUNCTION_IDS.items():
        code, layers = by_id[lid]
        handler = doc["Resources"][lid]["Properties"].get("Handler", default)
        out[stage] = BuiltFunction(code, handler, [p for _, p in layers])
    return out


def run_smoke(build: Path, python: str, runtime_dir: Path, logs: Path) -> tuple[object, list[str]]:
    """Deploy, upload, execute the batch with every invoke in a worker. Returns the run and
    the image URIs (the broken one last)."""
    from moto.server import ThreadedMotoServer

    from yolo_sfn.demo import ensure_demo_model
    from yolo_sfn.local.engine import LocalEngine

    model = ensure_demo_model()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # a free port
    server.start()
    port = server.get_host_and_port()[1]
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                LocalEngine(ROOT, retry_scale=0.0) as eng, \
                WorkerPool(built_functions(build), python=python, runtime_dir=runtime_dir,
                           endpoint=f"http://127.0.0.1:{port}", logs=logs,
                           region=eng.region) as pool:
            eng.router.out_of_process = pool.invoke
            eng.deploy(model)
            broken = Path(tmp) / BROKEN
            broken.write_bytes(b"this is not an image\n" * 10)
            uris, _ = eng.upload_inputs([ROOT / "testdata" / "images", broken])
            run = eng.execute({"images": uris}, timeout_s=110)
            run.extra["workers"] = {stage: w.describe() for stage, w in pool.workers.items()}
            run.extra["opt_dir"] = pool.opt_dir
            return run, uris
    finally:
        server.stop()


def problems(run, uris: list[str], allowed: list[Path]) -> list[str]:
    """What is wrong with the run: every stage ran and no invoke failed to import or run,
    every image is in the summary, the good ones succeeded, the broken one failed at
    preprocess. Each worker ran Python 3.12 and loaded third-party modules only from
    ``allowed`` (the build folder, the runtime's boto3) or the interpreter's standard library."""
    found = []
    for a in run.attempts:
        if a.outcome != "ok" and (a.error_type or "").startswith("Runtime."):
            found.append(f"{a.stage}: {a.error_type}")
    ran = {a.stage for a in run.attempts if a.outcome == "ok"}
    found += [f"{stage}: never ran successfully" for stage in STAGES if stage not in ran]
    allowed = [*allowed, run.extra["opt_dir"]]  # the layers, merged as in /opt
    for stage, info in run.extra["workers"].items():
        if not info.get("python", "").startswith("3.12."):
            found.append(f"{stage}: ran under Python {info.get('python')}, not 3.12")
        outside = sorted(name for name, path in info.get("modules", {}).items()
                         if not any(path.startswith(str(p)) for p in allowed))
        if outside:
            found.append(f"{stage}: loaded {outside} from outside the build, its layers and "
                         "the runtime's boto3")
    summary = run.summary or {}
    images = {i["uri"]: i for i in summary.get("images", [])}
    for uri in uris:
        image = images.get(uri)
        if image is None:
            found.append(f"{uri}: not in the summary")
        elif uri.endswith("/" + BROKEN):
            stage = (image.get("error") or {}).get("stage")
            if image["status"] != "failed" or stage != "preprocess":
                found.append(f"{uri}: expected failed at preprocess, got {image['status']} "
                             f"at {stage}")
        elif image["status"] != "succeeded":
            found.append(f"{uri}: {image['status']}: {image.get('error')}")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=ROOT / ".aws-sam" / "build", type=Path)
    ap.add_argument("--python", help="a Python 3.12 interpreter (default: found)")
    ap.add_argument("--runtime-dir", type=Path, default=ROOT / ".cache" / "lambda-py312",
                    help="boto3 for that interpreter (installed there when missing)")
    ap.add_argument("--logs", type=Path, default=ROOT / "out" / "built-smoke",
                    help="each worker's stderr (the functions' logs)")
    args = ap.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        ap.error(f"{args.build_dir}: no template.yaml; run `sam build` (make sam-build) first")
    python = find_python312(args.python)
    if python is None:
        what = f"{args.python} is not Python 3.12" if args.python else \
            "no Python 3.12 interpreter found"
        print(f"{what}: install one (`uv python install 3.12`, or "
              "`pyenv install 3.12`) and pass --python, see README.md", file=sys.stderr)
        return 2
    ensure_boto3(python, args.runtime_dir)
    print("import check (check_layers.py): each handler with only its layers")
    if not import_check(args.build_dir, python, args.runtime_dir):
        return 1
    shutil.rmtree(args.logs, ignore_errors=True)
    started = time.monotonic()
    run, uris = run_smoke(args.build_dir.resolve(), python, args.runtime_dir.resolve(), args.logs)
    stdlib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                               "['stdlib'])"], capture_output=True, text=True,
                            check=True).stdout.strip()
    found = problems(run, uris, [args.build_dir.resolve(), args.runtime_dir.resolve(),
                                 Path(stdlib), WORKER])
    summary = run.summary or {}
    print(json.dumps({"python": python, "status": run.status, "succeeded": summary.get(
        "succeeded"), "failed": summary.get("failed"), "invokes": len(run.attempts),
        "workers_s": round(time.monotonic() - started, 1), "logs": str(args.logs)}))
    layered = (str(run.extra["opt_dir"]), str(args.runtime_dir.resolve()))
    for stage, info in run.extra["workers"].items():
        names = sorted(n for n, path in info.get("modules", {}).items() if path.startswith(layered))
        print(f"  {stage:12s} Python {info.get('python')}, from its layers + boto3: "
              f"{' '.join(names)}")
    for p in found:
        print(f"FAIL {p}", file=sys.stderr)
    if found:
        print(f"function logs: {args.logs}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
