"""The bad-input catalogue through the WHOLE local workflow (template.yaml + the ASL on moto).

One engine (one deploy) for the module. Executions:
1. the catalogue batch: the good samples, every broken/odd image from make_bad_inputs.py,
   tricky keys, a missing key and duplicates, all in one execution;
2. a batch naming an object in a bucket outside the allow-list (INPUT_BUCKETS);
3. a small mixed batch with every log record captured: logs, outputs and stored JSON must hold
   no signature, credential name or (distinctive, injected) credential value;
4. malformed execution inputs and sources (each must fail fast at Plan, naming the field);
5. a list over the inline payload limit, submitted through the CLI submit path (manifest).

Every input must end as exactly one summary entry / table item / result JSON; failures name
stage + error type + the input; good images' detections equal Detector's.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from make_bad_inputs import build_cases
from wf_helpers import (
    assert_clear_error,
    assert_exactly_once,
    assert_same_detections,
    expected_detections,
)

pytest.importorskip("moto")
pytest.importorskip("samtranslator")

from yolo_sfn.local.engine import LocalEngine

ROOT = Path(__file__).resolve().parents[2]
INPUT = "yolo-sfn-input"
FORBIDDEN = "not-allowed-input"
PREFIX = "catalogue/"
CASES = build_cases()
DUPLICATED = ["good/dog.jpg", "keys/ünïcödé/狗.jpg", "keys/ünïcödé/狗.jpg"]
FAKE_SECRET = "Fake" + secrets.token_hex(18)  # 40 chars, like a secret access key
FAKE_TOKEN = "FakeToken" + secrets.token_hex(24)
LEAKS = ("X-Amz-Signature", "X-Amz-Credential", "AWS_SECRET", "aws_secret_access_key",
         "Signature=", FAKE_SECRET, FAKE_TOKEN)


def uri(key: str, bucket: str = INPUT) -> str:
    return f"s3://{bucket}/{PREFIX}{key}"


@pytest.fixture(scope="module")
def engine(rel_model):
    with LocalEngine(ROOT, retry_scale=0.0) as eng:
        # credentials as distinctive values, so a leak into logs/outputs is detectable
        os.environ["AWS_SECRET_ACCESS_KEY"] = FAKE_SECRET
        os.environ["AWS_SESSION_TOKEN"] = FAKE_TOKEN
        eng.deploy(rel_model)
        s3 = eng.client("s3")
        for case in CASES:
            if case.data is not None:
                s3.put_object(Bucket=INPUT, Key=PREFIX + case.key, Body=case.data)
        for name, body in MANIFESTS.items():
            s3.put_object(Bucket=INPUT, Key=f"manifests/{name}", Body=body.encode())
        s3.create_bucket(Bucket=FORBIDDEN)
        s3.put_object(Bucket=FORBIDDEN, Key=PREFIX + "good/dog.jpg",
                      Body=(ROOT / "testdata/images/dog.jpg").read_bytes())
        eng.model_path = rel_model
        yield eng


@pytest.fixture(scope="module")
def catalogue(engine):
    uris = [uri(c.key) for c in CASES] + [uri(k) for k in DUPLICATED]
    run = engine.execute({"images": uris, "batch_id": "catalogue"}, timeout_s=900)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    entries = assert_exactly_once(engine, run, uris)
    return run, entries


def test_every_input_exactly_once(catalogue) -> None:
    run, entries = catalogue
    expected_failed = sum(c.expect == "failed" for c in CASES)
    assert run.summary["failed"] == expected_failed, [
        (u, e["error"]) for u, e in entries.items() if e["status"] == "failed"]
    assert run.summary["succeeded"] == len(CASES) - expected_failed


def test_duplicates_reported(catalogue) -> None:
    run, _ = catalogue
    assert sorted(run.summary["duplicates"]) == sorted(
        [uri("good/dog.jpg"), uri("keys/ünïcödé/狗.jpg"), uri("keys/ünïcödé/狗.jpg")])


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_case(engine, catalogue, case) -> None:
    _, entries = catalogue
    entry = entries[uri(case.key)]
    if case.expect == "failed":
        assert_clear_error(entry, stage=case.stage or {"preprocess", "plan"}, error=case.error,
                           names=PREFIX + case.key)
        return
    assert entry["status"] == "succeeded", entry.get("error")
    result = engine.get_json(entry["result_uri"])
    assert result["status"] == "succeeded" and result["error"] is None
    (w, h), want = expected_detections(engine.model_path, case.data)
    assert (result["width"], result["height"]) == (w, h)
    if case.reference is not None:  # the decoder's size is the true (oriented) size
        assert (h, w) == case.reference.shape[:2]
    assert entry["num_detections"] == len(result["detections"])
    assert_same_detections(result["detections"], want)


def test_exif_rotation_is_honoured_end_to_end(engine, catalogue) -> None:
    """The EXIF-rotated dog must give the upright dog's detections (within JPEG loss)."""
    _, entries = catalogue
    rot = engine.get_json(entries[uri("odd/exif-rot6.jpg")]["result_uri"])
    dog = engine.get_json(entries[uri("good/dog.jpg")]["result_uri"])
    assert (rot["width"], rot["height"]) == (dog["width"], dog["height"]) == (768, 576)
    assert {d["label"] for d in rot["detections"]} == {d["label"] for d in dog["detections"]}


# --- allow-list ------------------------------------------------------------------------------
def test_bucket_outside_allow_list_is_a_failure_record(engine, catalogue) -> None:
    uris = [uri("good/person.jpg"), uri("good/dog.jpg", FORBIDDEN)]
    run = engine.execute({"images": uris, "batch_id": "forbidden"}, timeout_s=300)
    assert run.status == "SUCCEEDED", (
        f"one URI outside INPUT_BUCKETS failed the whole batch: {run.error}: {run.cause}")
    entries = assert_exactly_once(engine, run, uris)
    assert entries[uris[0]]["status"] == "succeeded"
    assert_clear_error(entries[uris[1]], stage={"plan", "preprocess"},
                       error={"S3UriError", "AccessDeniedError"}, names=FORBIDDEN)


# --- no credentials anywhere -------------------------------------------------------------------
class _AllFields(logging.Formatter):
    """The message and every attribute (Powertools puts ``extra=`` fields there)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({k: str(v) for k, v in record.__dict__.items()}, ensure_ascii=False)


class capture_everything:
    """Every log record (any logger, any level that is enabled) and stdout/stderr."""

    def __enter__(self) -> io.StringIO:
        self.buf = io.StringIO()
        self.handler = logging.StreamHandler(self.buf)
        self.handler.setLevel(logging.DEBUG)
        self.handler.setFormatter(_AllFields())
        self.loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)]
        for lg in self.loggers:
            lg.addHandler(self.handler)
        self.out = redirect_stdout(self.buf)
        self.err = redirect_stderr(self.buf)
        self.out.__enter__()
        self.err.__enter__()
        return self.buf

    def __exit__(self, *exc) -> None:
        self.err.__exit__(*exc)
        self.out.__exit__(*exc)
        for lg in self.loggers:
            lg.removeHandler(self.handler)


@pytest.fixture(scope="module")
def logged_run(engine, catalogue):  # after the catalogue: every handler's logger exists
    """A small mixed batch (success, decode failure, missing key) with every log captured."""
    uris = [uri("good/person.jpg"), uri("bad/text.jpg"), uri("keys/missing.jpg")]
    with capture_everything() as logs:
        run = engine.execute({"images": uris, "batch_id": "logged"}, timeout_s=300)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert_exactly_once(engine, run, uris)
    return run, logs.getvalue()


def test_no_credentials_or_signatures_in_logs_and_outputs(engine, catalogue,
                                                          logged_run) -> None:
    run, logs = logged_run
    assert "ImageDecodeError" in logs and "ObjectNotFoundError" in logs, (
        "the stage warnings were not captured: the capture is broken")
    texts = {"logs": logs, "output": json.dumps(run.output), "error": f"{run.error} {run.cause}",
             "summary": json.dumps(run.summary)}
    for r in (catalogue[0], run):
        for img in r.summary["images"]:
            if img.get("result_uri"):
                texts[img["result_uri"]] = json.dumps(engine.get_json(img["result_uri"]))
    for where, text in texts.items():
        for leak in LEAKS:
            assert leak not in text, f"{leak!r} found in {where}"
        assert "?X-Amz-" not in text, f"presigned URL in {where}"


# --- malformed execution input -------------------------------------------------------------
GOOD = f"s3://{INPUT}/{PREFIX}good/dog.jpg"
MANIFESTS = {"garbage.json": "[oops", "empty.txt": "# nothing\n",
             "deep.json": "[" * 5000 + "]" * 5000}
MALFORMED = {
    "missing-source": ({}, "images|prefix|manifest"),
    "images-not-a-list": ({"images": GOOD}, "images"),
    "images-empty": ({"images": []}, "images"),
    "images-item-not-a-string": ({"images": [GOOD, 7]}, "images[1]"),
    "not-an-s3-uri": ({"images": [GOOD, "https://example.com/x.jpg"]}, "images[1]"),
    "score-wrong-type": ({"images": [GOOD], "score": "high"}, "score"),
    "unknown-field": ({"imges": [GOOD]}, "imges"),
    "empty-prefix": ({"prefix": f"s3://{INPUT}/nothing-here/"}, "prefix"),
    "manifest-not-json": ({"manifest": f"s3://{INPUT}/manifests/garbage.json"}, "manifest"),
    "manifest-empty": ({"manifest": f"s3://{INPUT}/manifests/empty.txt"}, "manifest"),
    "manifest-deeply-nested": ({"manifest": f"s3://{INPUT}/manifests/deep.json"}, "manifest"),
    "prefix-outside-allow-list": ({"prefix": f"s3://{FORBIDDEN}/{PREFIX}"}, "prefix"),
    "manifest-outside-allow-list": ({"manifest": f"s3://{FORBIDDEN}/list.json"}, "manifest"),
    "prefix-lookalike-bucket": ({"prefix": f"s3://{INPUT}-evil/"}, "prefix"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_fails_fast_naming_the_field(engine, name) -> None:
    event, field = MALFORMED[name]
    run = engine.execute(event, timeout_s=120)
    assert run.status == "FAILED", f"{name}: {run.status} {run.output}"
    assert run.error in ("InputValidationError", "S3UriError"), (run.error, run.cause)
    cause = json.loads(run.cause)
    assert cause["errorType"] == run.error
    assert cause["errorMessage"].startswith(f"{field}:"), cause["errorMessage"]
    assert not any(a.stage != "plan" for a in run.attempts), "work started after a bad input"
    assert len([a for a in run.attempts if a.stage == "plan"]) == 1, "validation retried"


# --- over the inline limit: the CLI submit path writes a manifest ------------------------------
def test_list_over_inline_limit_goes_via_manifest(engine) -> None:
    from yolo_sfn.remote import api

    names = ["dog.jpg", "person.jpg", "horses.jpg"]
    uris = [uri(f"good/{n}") for n in names]
    # 256 KiB of input: the three URIs repeated; Plan must de-duplicate them back to three
    repeated = uris * (1 + (api.MAX_INLINE_INPUT + 4096) // sum(len(u) + 4 for u in uris))
    assert len(json.dumps({"images": repeated})) > api.MAX_INLINE_INPUT
    out = api.submit(engine.stack_name, repeated, batch_id="over-inline-limit")
    assert out["manifest_written"], "submit did not switch to a manifest"
    desc = engine.wait(out["execution_arn"], timeout_s=300)
    assert desc["status"] == "SUCCEEDED", (desc.get("error"), desc.get("cause"))
    summary = engine.get_json(json.loads(desc["output"])["summary_uri"])
    assert summary["submitted"] == len(repeated)
    assert summary["unique"] == 3 and summary["succeeded"] == 3
    assert len(summary["duplicates"]) == len(repeated) - 3
