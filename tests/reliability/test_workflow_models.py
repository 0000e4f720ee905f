"""Bad models through the whole workflow: every image fails with a clear ModelError naming
the model (not a numpy/interpreter traceback), and the summary still lists every image.

Each variant needs its own deploy (the model is the stack's ``ModelUri``): one small
execution (two images) per variant. A last test replaces a model under the same file name
between two runs and checks the second run really uses the new model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from wf_helpers import ROOT, TRACEBACK, assert_exactly_once

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.engine import MODEL_BUCKET, LocalEngine

INPUT = "yolo-sfn-input"
IMAGES = ["dog.jpg", "person.jpg"]


def _variant(model: Path, folder: Path, name: str) -> tuple[Path | None, str]:
    """Write variant ``name`` of ``model`` into ``folder``: (local .tflite or None, error)."""
    meta = json.loads(model.with_name(model.name + ".json").read_text())
    data = model.read_bytes()
    tag = uuid.uuid4().hex[:8]  # unique S3 name: the stages cache models by URI (F4)
    out = folder / f"{name}-{tag}.tflite"
    if name == "corrupt":
        out.write_bytes(b"\x00garbage" * 512)
    elif name == "truncated":
        out.write_bytes(data[: len(data) // 2])
    else:
        out.write_bytes(data)
    if name == "classes-mismatch":
        meta = {**meta, "num_classes": 3, "names": ["a", "b", "c"]}
    elif name == "input-mismatch":
        meta = {**meta, "input_size": [320, 320]}
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text("{not json" if name == "sidecar-corrupt" else json.dumps(meta))
    return out, name


# variant -> (stage that must fail, error types accepted)
VARIANTS = {
    "corrupt": ("infer", {"ModelError"}),
    "truncated": ("infer", {"ModelError"}),
    "classes-mismatch": ("infer", {"ModelError"}),
    "input-mismatch": ("infer", {"ModelError"}),
    "sidecar-corrupt": ("preprocess", {"ModelError"}),
}
# a model file that does not exist fails the execution at Plan, which pins the model's
# version before any child starts
MISSING = ("tflite-missing", "sidecar-missing")


def _deploy(eng: LocalEngine, model: Path, name: str) -> str:
    """Upload what the variant has; returns the ModelUri."""
    s3 = eng.client("s3")
    s3.create_bucket(Bucket=MODEL_BUCKET)
    key = f"models/{model.name}"
    if name != "tflite-missing":
        s3.put_object(Bucket=MODEL_BUCKET, Key=key, Body=model.read_bytes())
    if name != "sidecar-missing":
        s3.put_object(Bucket=MODEL_BUCKET, Key=key + ".json",
                      Body=model.with_name(model.name + ".json").read_bytes())
    model_uri = f"s3://{MODEL_BUCKET}/{key}"
    eng.deploy(None, ModelUri=model_uri)
    for n in IMAGES:
        s3.put_object(Bucket=INPUT, Key=f"m/{n}", Body=(ROOT / "testdata/images" / n).read_bytes())
    return model_uri


@pytest.mark.parametrize("name", MISSING)  # finding F9 (fixed), now caught by Plan
def test_missing_model_file_fails_the_execution_at_plan(rel_model, tmp_path, name) -> None:
    model, _ = _variant(rel_model, tmp_path, name)
    with LocalEngine(ROOT, retry_scale=0.0) as eng:
        model_uri = _deploy(eng, model, name)
        run = eng.execute({"images": [f"s3://{INPUT}/m/{IMAGES[0]}"],
                           "batch_id": f"model-{name}"}, timeout_s=300)
    assert run.status == "FAILED" and run.error == "ModelError", (run.error, run.cause)
    message = json.loads(run.cause)["errorMessage"]
    assert Path(model_uri).name in message and "model file unavailable" in message
    assert not TRACEBACK.search(message), message
    assert not [a for a in run.attempts if a.stage in ("preprocess", "infer")]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bad_model_fails_every_image_clearly(rel_model, tmp_path, name) -> None:
    model, _ = _variant(rel_model, tmp_path, name)
    stage, types = VARIANTS[name]
    with LocalEngine(ROOT, retry_scale=0.0) as eng:
        model_uri = _deploy(eng, model, name)
        uris = [f"s3://{INPUT}/m/{n}" for n in IMAGES]
        run = eng.execute({"images": uris, "batch_id": f"model-{name}"}, timeout_s=300)
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        entries = assert_exactly_once(eng, run, uris)
    model_name = Path(model_uri).name
    for entry in entries.values():
        err = entry["error"]
        assert entry["status"] == "failed" and err, entry
        assert (err["stage"], err["type"]) in {(stage, t) for t in types}, err
        assert model_name in err["message"], f"message does not name the model: {err}"
        assert not TRACEBACK.search(err["message"]), err["message"]


def _labels(run, eng) -> set[str]:
    out = set()
    for img in run.summary["images"]:
        out |= {d["label"] for d in eng.get_json(img["result_uri"])["detections"]}
    return out


def _same_name_models(rel_model: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Models A and B with the same file name; B's sidecar upper-cases every label."""
    name = f"same-name-{uuid.uuid4().hex[:8]}.tflite"
    a, b = tmp_path / "a" / name, tmp_path / "b" / name
    meta = json.loads(rel_model.with_name(rel_model.name + ".json").read_text())
    for p, m in ((a, meta), (b, {**meta, "names": [n.upper() for n in meta["names"]]})):
        p.parent.mkdir()
        shutil.copyfile(rel_model, p)
        p.with_name(name + ".json").write_text(json.dumps(m))
    return a, b


def test_model_replaced_under_the_same_name_is_used_by_the_next_run(rel_model, tmp_path):
    """F4 (fixed in c59408e): two ``yolo-sfn run`` processes, same model file name, different
    models: the second must not be served the first one's cached download."""
    a, b = _same_name_models(rel_model, tmp_path)
    labels = []
    for model in (a, b):
        out = tmp_path / f"out-{model.parent.name}"
        proc = subprocess.run(
            [sys.executable, "-m", "yolo_sfn.cli", "run", str(ROOT / "testdata/images/dog.jpg"),
             "--model", str(model), "--out", str(out), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for leak in ("X-Amz-Signature", "X-Amz-Credential", "Signature=", "AWS_SECRET",
                     "aws_secret_access_key"):
            assert leak not in proc.stdout + proc.stderr, f"{leak!r} in yolo-sfn run output"
        labels.append({d["label"] for r in (out / "results").glob("*.json")
                       for d in json.loads(r.read_text())["detections"]})
    assert "dog" in labels[0]
    assert "DOG" in labels[1], f"run 2 used model A's labels: {labels[1]}"


def test_model_replaced_under_the_same_name_in_one_process(rel_model, tmp_path) -> None:
    """F4b (fixed): the in-process caches used to be keyed by URI only."""
    a, b = _same_name_models(rel_model, tmp_path)
    uris = [f"s3://{INPUT}/m/dog.jpg"]
    labels = []
    for model in (a, b):
        with LocalEngine(ROOT, retry_scale=0.0) as eng:
            eng.deploy(model)
            eng.client("s3").put_object(Bucket=INPUT, Key="m/dog.jpg",
                                        Body=(ROOT / "testdata/images/dog.jpg").read_bytes())
            run = eng.execute({"images": uris}, timeout_s=300)
            assert run.summary["succeeded"] == 1, run.summary
            labels.append(_labels(run, eng))
    assert "dog" in labels[0]
    assert "DOG" in labels[1], f"run 2 still used model A's labels: {labels[1]}"
