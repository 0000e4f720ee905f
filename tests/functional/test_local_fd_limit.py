"""Open files stay bounded on the local engine whatever the number of images (issue 10 item 3:
moto kept one open temporary file per stored object over its buffer size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parents[1]  # fixtures.toystack
LIMIT = 64  # well under one descriptor per image
IMAGES = 80

SCRIPT = r"""
import json, os, resource, sys
from pathlib import Path
from yolo_sfn.local.engine import LocalEngine
from fixtures.toystack import write_toy_project

tmp, n, limit = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
root = write_toy_project(tmp / "toy")
images = tmp / "images"
images.mkdir()
for i in range(n):
    (images / f"img{i:03d}.jpg").write_bytes(os.urandom(100_000))  # over moto's 64 KiB buffer
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
with LocalEngine(root, retry_scale=0.0) as eng:
    eng.deploy()
    uris, missing = eng.upload_inputs([images])
    run = eng.execute({"images": uris}, timeout_s=600)
    print(json.dumps({"status": run.status, "uris": uris,
                      "images": [i["uri"] for i in run.summary["images"]],
                      "succeeded": run.summary["succeeded"],
                      "fds": len(os.listdir("/proc/self/fd"))}))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_run_of_many_images_fits_a_low_open_file_limit(tmp_path):
    path = [str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(IMAGES), str(LIMIT)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "SUCCEEDED"
    assert sorted(out["images"]) == sorted(out["uris"]) and len(out["uris"]) == IMAGES
    assert out["succeeded"] == IMAGES
    assert out["fds"] < LIMIT
