"""``yolo-sfn run`` of N images: this checkout against another source tree, side by side.

    python bench/run_vs_commit.py [--baseline 8f1a569|TREE] [--images 200] [--repeats 3]

``--baseline`` is the commit to compare with (default 8f1a569, the last one-image-per-child
design; checked out as a temporary ``git worktree``) or a folder holding its source tree.
The N images are cycled from testdata/images under distinct names.
Runs alternate (baseline, this, baseline, this...) so both see the same machine load; each is
a fresh ``yolo-sfn run --out`` process with its tree first on ``PYTHONPATH`` and ``--project``
pointing at it. Reported per tree: median wall seconds of the whole command, median execution
seconds (the command's "execution SUCCEEDED in Xs" line) and median CPU seconds (user + sys of
the process: what the machine spent, whatever else it was running). Target: this / baseline
wall <= 0.67 (issue 11). Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TARGET = 0.67
EXEC_LINE = re.compile(r"execution \w+ in ([0-9.]+)s")


def make_images(folder: Path, n: int) -> None:
    sources = sorted((HERE / "testdata" / "images").iterdir())
    for i in range(n):
        src = sources[i % len(sources)]
        shutil.copy(src, folder / f"img{i:04d}{src.suffix}")


@contextmanager
def baseline_tree(baseline: str, tmp: Path) -> Iterator[Path]:
    """A folder holding the baseline's source: ``baseline`` itself, or a temporary git
    worktree of that commit (removed afterwards)."""
    if Path(baseline).is_dir():
        yield Path(baseline).resolve()
        return
    tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(tree),
                    baseline], check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)],
                       check=False)


def one_run(tree: Path, images: Path, out: Path) -> dict:
    env_path = f"{tree / 'src'}"
    cmd = [sys.executable, "-m", "yolo_sfn.cli", "run", "--project", str(tree), "--out",
           str(out), str(images)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": env_path,
                               "HOME": str(Path.home())})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    found = EXEC_LINE.search(proc.stdout)
    return {"wall_s": wall, "execution_s": float(found.group(1)) if found else None,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="8f1a569", help="commit or source tree")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"baseline": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp, baseline_tree(args.baseline, Path(tmp)) as base:
        trees = {"baseline": base, "this": HERE}
        images = Path(tmp) / "images"
        images.mkdir()
        make_images(images, args.images)
        for r in range(args.repeats):
            for name, tree in trees.items():
                res = one_run(tree, images, Path(tmp) / f"out-{name}")
                runs[name].append(res)
                print(f"repeat {r + 1} {name}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in res.items() if v is not None), flush=True)
    med = {name: {k: statistics.median(x[k] for x in rs if x[k] is not None)
                  for k in rs[0]} for name, rs in runs.items()}
    ratio = {k: med["this"][k] / med["baseline"][k] for k in med["this"]}
    print(json.dumps({"medians": med, "this_over_baseline": ratio}, indent=1))
    if args.json_out:
        args.json_out.write_text(json.dumps({"runs": runs, "medians": med,
                                             "this_over_baseline": ratio}, indent=1))
    ok = ratio["wall_s"] <= TARGET
    print(f"wall this/baseline {ratio['wall_s']:.2f} (target <= {TARGET}): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
