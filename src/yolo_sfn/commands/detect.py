"""``yolo-sfn detect``: run the detector on local images, in this process.

    yolo-sfn detect testdata/images/dog.jpg                     # demo model, readable table
    yolo-sfn detect --model m.tflite --json --annotate out/ a.jpg b.png

Exit codes: 0 all images done; 1 some images failed (each named on stderr, the others still
run); 2 usage or model errors; 130 Ctrl-C (the images done so far are printed). ``--json``
prints ONE array, one object per image in argument order:
``{"image", "width", "height", "detections": [Detection.to_dict()...]}`` (+ ``"annotated"``:
the copy's path, with ``--annotate``) or, for an image that failed,
``{"image", "width": null, "height": null, "error": {"type", "message"}}``. ``--annotate``
never replaces an input or a file yolo-sfn did not write (``yolo_sfn.outputs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yolo_sfn.commands.checks import int_in, output_dir, path_arg, unit_float
from yolo_sfn.contract import NMS_KINDS, RESIZE_CHOICES
from yolo_sfn.env import MAX_THREADS

_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in local images (in-process, no AWS)",
        description="Decode, resize, run the TFLite model and NMS on each IMAGE, in this "
        "process. Without --model the demo model (yolov3-tiny, COCO) is used.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--model", type=path_arg,
                   help="M.tflite (+ M.tflite.json); default: demo model")
    p.add_argument("--score", type=unit_float, default=0.25, help="score threshold (0.25)")
    p.add_argument("--iou", type=unit_float, default=0.45, help="NMS IoU threshold (0.45)")
    p.add_argument("--resize", choices=RESIZE_CHOICES,
                   help="default (model): letterbox for a model converted from a letter_box=1 "
                        "cfg, else stretch")
    p.add_argument("--nms", choices=NMS_KINDS, help="NMS kind (default: the model's cfg)")
    p.add_argument("--threads", type=int_in(1, MAX_THREADS), help="interpreter threads")
    p.add_argument("--annotate", type=path_arg, metavar="OUTDIR", help="write annotated images")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    p.set_defaults(func=main)


def _model_path(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    from yolo_sfn.errors import ModelError

    try:
        from yolo_sfn.demo import ensure_demo_model
    except ImportError as e:
        raise ModelError(f"no --model given and the demo model is unavailable ({e})") from None
    return Path(ensure_demo_model())


def _annotated_paths(outdir: Path, images: list[str]) -> dict[str, Path]:
    """image -> where its annotated copy goes: ``OUTDIR/<stem><ext>``, or ``<stem>-2<ext>``,
    ... when that name is taken by another image of this call (a/dog.jpg, b/dog.jpg), by an
    input image (``--annotate`` the images' own folder) or by any file yolo-sfn did not
    write (``OUTDIR/.yolo-sfn-outputs.json``). The record is saved before anything is written."""
    from yolo_sfn.outputs import OutputRecord

    rec = OutputRecord(outdir, "detect")
    inputs = {Path(i).resolve() for i in images}
    taken: set[Path] = set()
    paths = {}
    for image in dict.fromkeys(images):
        src = Path(image)
        suffix = src.suffix.lower() if src.suffix.lower() in _WRITABLE else ".png"
        paths[image] = rec.pick(outdir, src.stem or "image", suffix, taken, inputs)
        rec.claim(paths[image])
    rec.save()
    return paths


def _save_record(outdir: Path, written: list[Path]) -> None:
    from yolo_sfn.outputs import OutputRecord

    rec = OutputRecord(outdir, "detect")
    rec.previous = [n for n in rec.previous if (outdir / n).exists()]
    for path in written:
        rec.claim(path)
    rec.save()


def _format_table(results: list[dict]) -> str:
    from yolo_sfn.outputs import shown

    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{shown(r['image'])}: FAILED {r['error']['type']}: "
                         f"{shown(r['error']['message'])}")
            continue
        dets = r["detections"]
        lines.append(f"{shown(r['image'])} ({r['width']}x{r['height']}): "
                     f"{len(dets)} detections")
        for d in dets:
            x1, y1, x2, y2 = d["box"]
            lines.append(
                f"  {d['label']:<16s} {d['score']:6.4f}  [{x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}]"
            )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from yolo_sfn.core.annotate import annotate_file
    from yolo_sfn.core.detector import Detector
    from yolo_sfn.core.image import decode_image, full_size_hw, read_image_bytes
    from yolo_sfn.errors import YoloSfnError

    detector = Detector(
        _model_path(args.model),
        threads=args.threads,
        score=args.score,
        iou=args.iou,
        resize=args.resize,
        nms_kind=args.nms,
    )
    annotated: dict[str, Path] = {}
    if args.annotate is not None:
        output_dir(args.annotate, "--annotate")
        annotated = _annotated_paths(args.annotate, args.images)
    results: list[dict] = []
    written: list[Path] = []
    failed = 0
    try:
        for image in args.images:
            entry: dict = {"image": image, "width": None, "height": None}
            try:
                data = read_image_bytes(image)
                rgb = decode_image(data, name=str(Path(image)))  # reduced if over the limit
                src_hw = full_size_hw(data, rgb)  # boxes, width, height: the photo's pixels
                entry["height"], entry["width"] = src_hw
                dets = detector.detect(rgb, src_hw=src_hw)
                entry["detections"] = [d.to_dict() for d in dets]
                if args.annotate is not None:
                    written.append(annotate_file(annotated[image], rgb, dets, src_hw=src_hw))
                    entry["annotated"] = str(annotated[image])
            except YoloSfnError as e:
                failed += 1
                entry.pop("detections", None)
                entry["error"] = {"type": type(e).__name__, "message": str(e)}
                print(f"yolo-sfn: error: {e}", file=sys.stderr)
            results.append(entry)
    except KeyboardInterrupt:  # keep what finished: print it, say so
        print(f"yolo-sfn: interrupted after {len(results)} of {len(args.images)} images",
              file=sys.stderr)
        failed = -1
    finally:
        if args.annotate is not None:
            _save_record(args.annotate, written)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(_format_table(results))
    return 130 if failed < 0 else 1 if failed else 0
