"""Option checks shared by the subcommands: a bad path fails before any work, naming the option.

``path_arg`` is an argparse ``type=`` that refuses an empty string (``Path("")`` would quietly
be the current folder). ``output_dir`` / ``output_file`` create what an output option needs
up front, so a conversion or a batch never runs for minutes and then dies writing its result.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from yolo_sfn.errors import InputFileError


def path_arg(text: str) -> Path:
    """argparse ``type=``: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def unit_float(text: str) -> float:
    """argparse ``type=``: a number in [0, 1] (score and IoU thresholds)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return v


def int_in(lo: int, hi: int):
    """argparse ``type=`` factory: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text} is not in {lo}..{hi}")
        return v

    return parse


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def output_dir(path: Path, option: str) -> Path:
    """Create folder ``path`` (and parents) and check a file can be written in it."""
    if path.exists() and not path.is_dir():
        raise InputFileError(f"{option} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".yolo-sfn-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputFileError(f"{option} {path}: cannot write there ({_reason(e)})") from None
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` is a file name (not a folder) whose folder exists or can be created, writable."""
    if path.is_dir():
        raise InputFileError(f"{option} {path}: is a folder, give a file name")
    output_dir(path.parent, option)
    return path
