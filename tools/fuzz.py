#!/usr/bin/env python3
"""Run the fuzz suite (tests/fuzz) with the long budget, for manual/nightly runs.

    python tools/fuzz.py                      # every fuzz test, 20,000 examples each
    python tools/fuzz.py --examples 2000 -k s3uri
    python tools/fuzz.py -x                   # stop at the first failure

Sets ``HYPOTHESIS_PROFILE=long`` (random exploration + example database under
``.cache/hypothesis``, so a failure found here replays first next time) and
``FUZZ_EXAMPLES``; any other argument goes to pytest. CI runs the same tests with the
small, derandomised budget (``python -m pytest tests/fuzz``). Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000,
                        help="examples per fuzz test (default 20000)")
    args, rest = parser.parse_known_args(argv)
    env = dict(os.environ, HYPOTHESIS_PROFILE="long", FUZZ_EXAMPLES=str(args.examples))
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "fuzz"), "-q",
           "--hypothesis-show-statistics", *rest]
    print("+", " ".join(cmd), f"(HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES={args.examples})",
          flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
