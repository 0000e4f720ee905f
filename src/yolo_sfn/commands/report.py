"""``yolo-sfn report``: the self-contained HTML page of a batch.

    yolo-sfn report out/demo                                  # a `yolo-sfn run --out` folder
    yolo-sfn report NAME --stack yolo-sfn -o report.html      # a deployed execution (or its ARN)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a self-contained HTML report of a run or an execution",
        description="Write one HTML file (no network needed to open it) showing the batch at a "
        "glance, every failure, detections per class, a thumbnail per image and where the "
        "time went. SOURCE is a `yolo-sfn run --out` folder, or a deployed execution's ARN "
        "(or its name with --stack).")
    p.add_argument("source", metavar="EXECUTION|DIR",
                   help="execution ARN / name (with --stack), or a local run folder")
    p.add_argument("--stack", help="CloudFormation stack name (for an execution name)")
    p.add_argument("-o", "--output", type=Path,
                   help="HTML file to write (default: DIR/report.html, or ./report.html)")
    p.add_argument("--no-thumbnails", action="store_true",
                   help="execution: do not read the input images from S3 for thumbnails")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from yolo_sfn import report
    from yolo_sfn.errors import InputValidationError

    src = Path(args.source)
    if not args.stack and src.is_dir():
        out = report.report_from_dir(src, args.output)
    elif not args.stack and not args.source.startswith("arn:"):
        raise InputValidationError(
            f"{args.source!r}: not a folder, nor an execution ARN; for an execution name "
            "give --stack")
    else:
        out = report.report_for_execution(args.source, args.stack,
                                          args.output or Path("report.html"),
                                          thumbnails=not args.no_thumbnails)
    print(out)
    return 0
