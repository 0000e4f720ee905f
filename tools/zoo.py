#!/usr/bin/env python3
"""Convert every darknet detector cfg in a folder with random weights and check it against an
oracle (OpenCV's darknet importer, or an independent numpy forward pass where OpenCV cannot
run the cfg). Prints a markdown table: cfg, converts?, oracle?, max diff, GFLOP, seconds.

    python tools/zoo.py ../shared/data/darknet-cfg         # every detector cfg, 128-256 px
    python tools/zoo.py DIR --size 416 -k yolov4           # full size, names matching -k
    python tools/zoo.py DIR --precision fp16

A cfg is a detector when it has a [yolo], [Gaussian_yolo], [region] or [detection] section
(YOLOv1 [detection] cfgs are listed and fail with the converter's one-line error). The
comparison itself lives in ``tests/oracle/zoo_check.py`` (shared with the CI subset,
``tests/oracle/test_zoo.py``). Exit status 0 when every cfg that converts also passes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "oracle")]

DETECTOR = re.compile(r"^\s*\[(yolo|Gaussian_yolo|region|detection)\]", re.M)


def detector_cfgs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.glob("*.cfg") if DETECTOR.search(p.read_text(errors="replace"))),
        key=lambda p: p.name.lower(),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(ROOT / "testdata" / "cfg"), type=Path)
    ap.add_argument("--size", type=int, help="input size (default: 128, or the smallest of "
                    "160/192/256 the cfg parses at)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--winograd", action="store_true",
                    help="fp32: emit Winograd convs as `model convert` does (slower to convert)")
    ap.add_argument("-k", dest="match", default="", help="only cfgs whose name contains this")
    args = ap.parse_args(argv)

    import zoo_check

    # int8 (full-integer, calibrated on testdata/images): the tolerances of
    # tests/oracle/test_opencv_oracle.py's int8 check; fp32 and fp16: zoo_check.ATOL
    atol = (5e-2, 2e-2) if args.precision == "int8" else (zoo_check.ATOL, zoo_check.ATOL)

    cfgs = [p for p in detector_cfgs(args.folder) if args.match in p.name]
    print(f"{len(cfgs)} detector cfgs in {args.folder}\n")
    print("| cfg | size | converts | oracle | pass | max box diff | max score diff | GFLOP "
          "| s | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for cfg in cfgs:
        with tempfile.TemporaryDirectory() as tmp:
            r = zoo_check.check(cfg, Path(tmp), size=args.size, seed=args.seed,
                                precision=args.precision, winograd=args.winograd, atol=atol)
        results.append(r)
        size = f"{r.size[1]}x{r.size[0]}" if r.size else "-"  # darknet order: W x H
        print(f"| {r.cfg} | {size} | {'yes' if r.converts else 'no'} | {r.oracle or '-'} "
              f"| {'PASS' if r.passed else 'fail'} | {r.max_box:.1e} | {r.max_score:.1e} "
              f"| {r.gflop:.2f} | {r.seconds:.1f} | {r.error} |", flush=True)
    ok = sum(r.passed for r in results)
    conv = sum(r.converts for r in results)
    print(f"\n{ok} of {len(results)} detector cfgs convert and pass; {conv} convert.")
    return 0 if all(r.passed for r in results if r.converts) else 1


if __name__ == "__main__":
    sys.exit(main())
