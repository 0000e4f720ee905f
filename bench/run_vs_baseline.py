"""`yolo-sfn run` wall time, this checkout vs a baseline commit, side by side in one script.

Both sides run the same command line as a user would type it, in a subprocess with their own
source tree first on the path and their own checkout as the project (template.yaml + ASL):

    yolo-sfn run IMAGES_DIR --out OUT_DIR        (demo model unless --model)

over the same folder of N images (default 200, distinct files made from testdata/images by
flipping and resizing, so the planner de-duplicates nothing). The baseline tree is a
``git worktree`` of ``--baseline`` (default 8f1a569, one image per STANDARD child) made in a
temporary folder. Runs alternate baseline/current ``--repeats`` times; medians are compared.
Target (issue 11): current / baseline <= 0.67. Exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.67


def make_images(folder: Path, n: int) -> None:
    """``n`` distinct images from testdata/images: flips x scales, JPEG-encoded."""
    import cv2

    sources = sorted(p for p in (ROOT / "testdata" / "images").iterdir() if p.is_file())
    sources = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sources]
    sources = [s for s in sources if s is not None]
    variants = [(flip, scale) for flip in (None, 0, 1, -1) for scale in (1.0, 0.9, 0.8, 0.7,
                                                                          0.6, 0.5, 1.1, 1.2)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = sources[i % len(sources)]
        flip, scale = variants[(i // len(sources)) % len(variants)]
        if flip is not None:
            img = cv2.flip(img, flip)
        img = cv2.resize(img, None, fx=scale, fy=scale + 0.001 * (i // (len(sources) * 32)))
        cv2.imwrite(str(folder / f"img{i:04d}.jpg"), img)


def run_once(tree: Path, images: Path, out: Path, model: str | None) -> tuple[float, dict]:
    """Wall seconds of one `yolo-sfn run` from ``tree``, and its summary counts."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "YOLO_SFN_PROJECT": str(tree)}
    cmd = [sys.executable, "-m", "yolo_sfn.cli", "run", str(images), "--out", str(out)]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{tree}: yolo-sfn run exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return wall, {k: summary.get(k) for k in ("submitted", "succeeded", "failed")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", default="8f1a569")
    ap.add_argument("--model", default=None, help="default: the demo model")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        ap.error("--images and --repeats must be >= 1")

    with tempfile.TemporaryDirectory(prefix="yolo-sfn-vs-") as tmp:
        tmp = Path(tmp)
        base = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base),
                        args.baseline], check=True)
        try:
            make_images(tmp / "images", args.images)
            walls: dict[str, list[float]] = {"baseline": [], "current": []}
            counts = {}
            for r in range(args.repeats):
                for side, tree in (("baseline", base), ("current", ROOT)):
                    wall, counts[side] = run_once(tree, tmp / "images", tmp / f"out-{side}",
                                                  args.model)
                    walls[side].append(wall)
                    print(f"repeat {r + 1} {side:9s} {wall:7.1f} s  {counts[side]}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False)
    med = {side: statistics.median(v) for side, v in walls.items()}
    ratio = med["current"] / med["baseline"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"median wall: baseline {med['baseline']:.1f} s, current {med['current']:.1f} s; "
          f"current/baseline = {ratio:.2f} (target <= {TARGET}) {verdict}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"images": args.images, "walls_s": walls,
                                             "median_s": med, "ratio": ratio,
                                             "counts": counts, "target": TARGET}, indent=1))
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
