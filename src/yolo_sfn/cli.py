"""``yolo-sfn`` command line. Each subcommand lives in its own module and registers itself.

A subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func=<callable(args) -> int>``. Heavy imports (TensorFlow, moto, cv2) happen inside the
command, never here, so ``yolo-sfn --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from yolo_sfn.errors import YoloSfnError

# module name under yolo_sfn.commands, in --help order
COMMANDS = ("model", "detect", "run", "remote", "report", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolo-sfn", description="Serverless batch object detection (darknet YOLO on TFLite)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"yolo_sfn.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"yolo_sfn.commands.{name}":
                continue  # not built yet
            raise
        mod.register(sub)
    return parser


def _is_aws_error(e: Exception) -> bool:
    """botocore's own errors (NoRegionError, NoCredentialsError, EndpointConnectionError, ...)
    and AWS error responses (ClientError), without importing botocore when it was not used."""
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return False
    return isinstance(e, exceptions.BotoCoreError | exceptions.ClientError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except YoloSfnError as e:
        print(f"yolo-sfn: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _is_aws_error(e):
            raise
        # no region / credentials / endpoint, or an AWS error response: one line, not a trace
        print(f"yolo-sfn: error: AWS: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
