"""Commands against a deployed stack: ``submit``, ``status``, ``results``, ``describe``, ``list``.

    yolo-sfn submit --stack yolo-sfn s3://bucket/a.jpg s3://bucket/b.jpg --wait
    yolo-sfn submit --stack yolo-sfn s3://bucket/photos/            # a prefix
    yolo-sfn submit --stack yolo-sfn --manifest s3://bucket/list.json
    yolo-sfn status NAME --stack yolo-sfn          (or an execution ARN)
    yolo-sfn results NAME --stack yolo-sfn --stage infer --json
    yolo-sfn describe ARN
    yolo-sfn list --stack yolo-sfn --status RUNNING

AWS credentials/region/endpoint come from boto3's usual chain (AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import argparse
import json
import sys

from yolo_sfn.contract import IMAGE_STAGES

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def _execution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("execution", metavar="EXECUTION", help="execution ARN, or name with --stack")
    p.add_argument("--stack", help="CloudFormation stack name")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="start a batch on a deployed stack")
    p.add_argument("--stack", required=True, help="CloudFormation stack name")
    p.add_argument("uris", nargs="*", metavar="S3URI",
                   help="s3://bucket/key ... or one s3://bucket/prefix/")
    p.add_argument("--manifest", help="s3:// JSON array or text file of image URIs")
    p.add_argument("--batch-id", help="batch id (default: chosen by Plan)")
    p.add_argument("--name", help="execution name (default: batch id + time)")
    p.add_argument("--wait", action="store_true", help="wait for the execution to finish")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="state and progress of an execution")
    _execution_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", help="each image's output of one stage")
    _execution_args(p)
    p.add_argument("--stage", choices=IMAGE_STAGES, default="store")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("describe", help="an execution's input, output and error")
    _execution_args(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("list", help="executions of the stack's state machine")
    p.add_argument("--stack", help="CloudFormation stack name (default: every *-detect machine)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)


def _dump(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_submit(args: argparse.Namespace) -> int:
    from yolo_sfn.remote import api

    out = api.submit(args.stack, args.uris, manifest=args.manifest, batch_id=args.batch_id,
                     name=args.name)
    if args.wait:
        desc = api.wait(out["execution_arn"])
        out["status"] = desc["status"]
        out["output"] = api._loads(desc.get("output"))
        out["error"], out["cause"] = desc.get("error"), desc.get("cause")
    if args.json:
        _dump(out)
    else:
        print(out["execution_arn"])
        if out["manifest_written"]:
            print(f"input too large for the payload: submitted manifest {out['manifest_written']}",
                  file=sys.stderr)
        if args.wait:
            print(f"{out['status']}: {json.dumps(out.get('output'), default=str)}")
    return 0 if not args.wait or out["status"] == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from yolo_sfn.remote import api

    st = api.status(args.execution, args.stack)
    if args.json:
        _dump(st)
        return 0
    items = st["items"]
    print(f"{st['execution_arn']}\n  status   {st['status']}  (start {st['start']}, "
          f"stop {st['stop'] or '-'})\n  batch    {st['batch_id']}")
    print(f"  items    total {items['total'] if items['total'] is not None else '?'}, "
          f"succeeded {items['succeeded']}, failed {items['failed']}, "
          f"recorded {items['recorded']}")
    if items.get("recorded_by_other_executions"):
        print(f"  (+ {items['recorded_by_other_executions']} images last written by another "
              "execution of this batch id)")
    for stage, c in st["stages"].items():
        print(f"  {stage:12s} passed {c['passed']:5d}  failed {c['failed']:5d}")
    if st["error"]:
        print(f"  error    {st['error']}: {st['cause']}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from yolo_sfn.remote import api

    rows = api.results(args.execution, args.stack, args.stage)
    if args.json:
        _dump(rows)
        return 0
    for r in rows:
        detail = ""
        if r.get("error"):
            detail = f"{r['error'].get('type')}: {r['error'].get('message')}"
        elif args.stage == "store":
            detail = f"{r.get('num_detections')} detections {r.get('class_counts') or ''}"
        elif "detections" in r:
            detail = f"{len(r['detections'])} detections"
        elif "heads" in r:
            detail = f"heads {r['heads']}"
        elif "input_shape" in r:
            detail = f"input {r['input_shape']} {r['input_dtype']}"
        elif r.get("artifact_present") is False:
            detail = "intermediate expired/absent"
        ms = f"{r['ms']:.0f} ms" if isinstance(r.get("ms"), int | float) else "-"
        print(f"{r['uri']}  {r['state']:11s} {ms:>8s}  {detail}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from yolo_sfn.remote import api

    _dump(api.describe(args.execution, args.stack))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from yolo_sfn.remote import api

    rows = api.list_executions(args.stack, args.status, args.limit)
    if args.json:
        _dump(rows)
        return 0
    for r in rows:
        print(f"{r['status']:10s} {r['start']}  {r['state_machine']}  {r['name']}")
    return 0
