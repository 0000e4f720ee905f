"""Plain-text tables and target checks shared by ``yolo-sfn bench`` and ``bench/*.py``."""

from __future__ import annotations

import argparse
import operator
import os
from dataclasses import asdict, dataclass

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    """``value OP limit``, e.g. Target("fp32 vs OpenCV", 0.71, "<=", 0.85, "x")."""

    name: str
    value: float
    op: str
    limit: float
    unit: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op {self.op!r} not in {sorted(_OPS)}")

    @property
    def passed(self) -> bool:
        return bool(_OPS[self.op](self.value, self.limit))

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        target = f"target {self.op} {self.limit:g}{self.unit}"
        return f"[{verdict}] {self.name}: {self.value:.3g}{self.unit} ({target})"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def table(headers: list[str], rows: list[list], *, floatfmt: str = "{:.1f}") -> str:
    """Left-aligned text table; floats through ``floatfmt``, None as '-'."""

    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines)


def verdict(targets: list[Target]) -> int:
    """Print each target line; return 0 when all pass, 1 otherwise."""
    for t in targets:
        print(t.line())
    return 0 if all(t.passed for t in targets) else 1


def script_parser(doc: str | None, *, with_boto3: bool = False) -> argparse.ArgumentParser:
    """The ``bench/`` scripts' common options: ``--threads`` (default: all cores), ``--json-out
    F`` and, for the fresh-process probes, ``--with-boto3``; ``doc`` is the script's help."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json-out", help="write every number to this JSON file")
    if with_boto3:
        ap.add_argument(
            "--with-boto3",
            action="store_true",
            help="probe also imports boto3 + builds an S3 client (the handler's imports)",
        )
    return ap
