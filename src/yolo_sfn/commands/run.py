"""``yolo-sfn run``: run a batch through template.yaml + the ASL on the embedded local engine.

    yolo-sfn run testdata/images/                   # folder(s) or files
    yolo-sfn run events/batch.json --out out/ --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yolo_sfn.commands.checks import int_in, output_dir, path_arg, unit_float
from yolo_sfn.contract import RESIZE_CHOICES

MAX_CONCURRENCY = 10_000  # a Distributed Map's MaxConcurrency limit on AWS


def register(sub: argparse._SubParsersAction) -> None:
    from yolo_sfn.workflow.messages import MAX_BATCH_ITEMS  # template.yaml BatchSize MaxValue

    p = sub.add_parser(
        "run",
        help="run a batch locally on the real state machine (moto, in-process)",
        description="Deploy template.yaml into an in-process moto, run the Step Functions "
        "workflow on local images (or an events/*.json execution input) and write "
        "DIR/summary.json, DIR/results/<image_id>.json and DIR/annotated/<name>.jpg.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE|EVENT.json",
                   help="image files/folders, or one execution-input event file")
    p.add_argument("--model", type=path_arg,
                   help="M.tflite (+ M.tflite.json); default: demo model")
    p.add_argument("--out", type=path_arg, default=Path("out"),
                   help="output folder (default out/); the previous run's outputs there "
                   "are replaced, other files kept")
    p.add_argument("--score", type=unit_float, help="score threshold")
    p.add_argument("--iou", type=unit_float, help="NMS IoU threshold")
    p.add_argument("--resize", choices=RESIZE_CHOICES,
                   help="resize mode (default: the stack's ResizeMode, model: letterbox for a "
                        "model converted from a letter_box=1 cfg, else stretch)")
    p.add_argument("--concurrency", type=int_in(1, MAX_CONCURRENCY),
                   help="Map MaxConcurrency (template parameter)")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH_ITEMS),
                   help="images per Distributed Map child (template parameter BatchSize)")
    p.add_argument("--project", type=path_arg, help="project root holding template.yaml")
    p.add_argument("--fault", action="append", default=[], metavar="STAGE:KIND[:GLOB[:TIMES]]",
                   help="inject a fault before a handler runs (repeatable); KIND: s3_transient, "
                   "throttle, crash, timeout; GLOB matches the image key; TIMES: count or 'all' "
                   "(default 1)")
    p.add_argument("--fast-retries", action="store_true",
                   help="record ASL Retry waits without sleeping them")
    p.add_argument("--json", action="store_true", help="print the run as JSON, no progress")
    p.set_defaults(func=main)


def parse_fault(text: str):
    """``STAGE:KIND[:GLOB[:TIMES]]`` -> ``Fault``."""
    from yolo_sfn.errors import InputValidationError
    from yolo_sfn.local.invoke import Fault

    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise InputValidationError(f"--fault {text!r}: expected STAGE:KIND[:GLOB[:TIMES]]")
    stage, kind = parts[0], parts[1]
    match = parts[2] if len(parts) > 2 and parts[2] else None
    times_text = parts[3] if len(parts) > 3 else "1"
    try:
        times = None if times_text == "all" else int(times_text)
        return Fault(stage, kind, match=match, times=times)
    except ValueError as e:
        raise InputValidationError(f"--fault {text!r}: {e}") from e


def _check_fault_stages(faults: tuple, root: Path) -> None:
    """A --fault naming no function of the template would silently inject nothing."""
    if not faults:
        return
    from yolo_sfn.errors import InputValidationError
    from yolo_sfn.local.template import read_template

    stages = sorted(read_template(root / "template.yaml").functions)
    for f in faults:
        if f.stage not in stages:
            raise InputValidationError(f"--fault {f.stage}:{f.kind}: no stage {f.stage!r} "
                                       f"(the template's stages: {', '.join(stages)})")


def _is_event(inputs: list[str]) -> bool:
    return len(inputs) == 1 and inputs[0].endswith(".json") and Path(inputs[0]).is_file()


def _progress_printer():
    def show(p) -> None:
        total = "?" if p.total is None else str(p.total)
        sys.stderr.write(
            f"\r{p.status.lower():9s} items {p.done}/{total} done, {p.failed} failed  "
            f"{p.elapsed_s:5.1f}s"
        )
        sys.stderr.flush()

    return show


def check_model(path: Path | None) -> None:
    """Load the model the run would deploy (``ModelError`` naming the user's file: not a
    TFLite file, a sidecar that disagrees with it), so a bad model stops the run before it
    deploys instead of failing every image under an internal cache path."""
    from yolo_sfn.core.runtime import Model

    if path is None:
        from yolo_sfn.demo import ensure_demo_model

        path = ensure_demo_model()
    # also makes LiteRT print its one-per-process INFO line here, not inside the progress line
    Model.load(path, threads=1)


def main(args: argparse.Namespace) -> int:
    from yolo_sfn.local import features
    from yolo_sfn.local.runner import (
        RunOptions,
        WritingInterrupted,
        check_out_dir,
        format_table,
        inputs_from_event,
        inputs_from_paths,
        previous_outputs,
        run_batch,
        table_rows,
    )
    from yolo_sfn.local.template import find_project_root

    root = find_project_root(args.project)
    if args.out.is_dir():
        check_out_dir(args.out)
    if _is_event(args.inputs):
        inputs = inputs_from_event(Path(args.inputs[0]), root)
    else:
        inputs = inputs_from_paths(args.inputs, outputs=previous_outputs(args.out))
    faults = tuple(parse_fault(f) for f in args.fault)
    _check_fault_stages(faults, root)
    check_model(args.model)
    output_dir(args.out, "--out")  # the last check: it creates the folder
    opts = RunOptions(model=args.model, out_dir=args.out, score=args.score, iou=args.iou,
                      resize=args.resize, concurrency=args.concurrency,
                      batch_size=args.batch_size, root=root,
                      faults=faults,
                      retry_scale=0.0 if args.fast_retries else 1.0)
    shown: list[str] = []
    try:
        if not args.json:
            from yolo_sfn.local.template import read_template

            shown = features.scan(read_template(root / "template.yaml").asl)
            shown += inputs.notes
            _print_notes(shown)
        run, written = run_batch(inputs, opts, None if args.json else _progress_printer())
    except WritingInterrupted:
        from yolo_sfn.outputs import RECORD

        print(f"\ninterrupted while writing {args.out}: the files written so far are listed "
              f"in {args.out / RECORD} (the next run replaces them)",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\ninterrupted before any image finished: {args.out} was left as it was",
              file=sys.stderr)
        return 130
    rows = table_rows(run)
    if args.json:
        print(json.dumps(_as_json(run, written, rows), indent=2, default=str))
    else:
        sys.stderr.write("\n")
        _print_notes([n for n in run.notes if n not in shown])
        _print_human(run, written, rows, format_table)
    return _exit_code(run, written)


def _exit_code(run, written: dict) -> int:
    """0 all done; 1 an image or the execution failed, or an output could not be written;
    130 interrupted (what finished is kept)."""
    if run.status == "ABORTED" and (run.summary or {}).get("interrupted"):
        return 130
    failed = (run.summary or {}).get("failed", 0)
    return 0 if run.succeeded and not failed and not written.get("errors") else 1


def _print_notes(notes: list[str]) -> None:
    if notes:
        print("local engine notes (where this run differs from AWS):", file=sys.stderr)
        for note in notes:
            print(f"  - {note}", file=sys.stderr)


def _as_json(run, written: dict, rows: list[dict]) -> dict:
    return {
        "execution_arn": run.execution_arn,
        "status": run.status,
        "error": run.error,
        "cause": run.cause,
        "elapsed_s": round(run.elapsed_s, 3),
        "summary": run.summary,
        "missing_inputs": run.extra.get("missing_inputs", []),
        "input_notes": run.extra.get("input_notes", []),
        "images": rows,
        "written": written,
        "attempts": [a.to_dict() for a in run.attempts],
        "retry_waits_s": run.retry_waits,
        "local_engine_notes": run.notes,
    }


def _print_human(run, written: dict, rows: list[dict], format_table) -> None:
    print(format_table(rows))
    s = run.summary or {}
    print(
        f"\nexecution {run.status} in {run.elapsed_s:.1f}s: {s.get('succeeded', 0)} succeeded, "
        f"{s.get('failed', 0)} failed of {s.get('unique', len(rows))} "
        f"({s.get('submitted', len(rows))} submitted)"
    )
    retries = sum(1 for a in run.attempts if a.attempt > 1)
    if retries:
        print(f"retried invokes: {retries}")
    if s.get("interrupted"):
        print(f"interrupted: {s.get('not_finished', 0)} image(s) not finished; the "
              f"{s.get('succeeded', 0) + s.get('failed', 0)} that finished are kept")
    elif not run.succeeded:
        print(f"error: {run.error}: {run.cause}")
    if run.cost and run.cost.get("usd_per_1000_images") is not None:
        usd = run.cost["usd"]
        print(f"on AWS (estimate, us-east-1 prices of {run.cost['prices_as_of']}): "
              f"${run.cost['usd_per_1000_images']:.4f} per 1,000 images; Lambda "
              f"${usd['lambda']:.6f}, Step Functions ${usd['step_functions']:.6f} "
              f"({run.cost['orchestration_share']:.0%}), S3 ${usd['s3']:.6f}, DynamoDB "
              f"${usd['dynamodb']:.6f} for this run (cost.json says how it was counted)")
    if written.get("summary"):
        print(f"wrote {written['summary']}, {len(written['results'])} results, "
              f"{len(written['annotated'])} annotated images"
              + (f", {written['report']}" if written.get("report") else ""))
    errors = written.get("errors") or []
    for e in errors[:10]:
        print(f"yolo-sfn: error: {e}", file=sys.stderr)
    if len(errors) > 10:
        print(f"yolo-sfn: error: ... and {len(errors) - 10} more (summary.json: write_errors)",
              file=sys.stderr)
