"""Stage messages, S3 URIs, manifest parsing and caught-error parsing (no AWS)."""

from __future__ import annotations

import json

import pytest

from yolo_sfn.errors import InputValidationError, S3UriError
from yolo_sfn.workflow import messages as m
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.events import list_events, load_event
from yolo_sfn.workflow.s3uri import (
    S3Uri,
    check_allowed,
    format_s3_uri,
    parse_allow_list,
    parse_s3_uri,
)
from yolo_sfn.workflow.stages import batch_id_from_name, image_id_for, parse_manifest


# --- s3uri ---------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", [
    "s3://bucket/key.jpg", "s3://my.bucket-1/a b/ü ñ/写真.png", "s3://bkt/a+b%20c.jpg",
    "s3://bkt/deep/ly/nested/x.JPEG",
])
def test_parse_format_round_trip_keeps_keys_literal(uri: str) -> None:
    loc = parse_s3_uri(uri)
    assert str(loc) == uri == format_s3_uri(loc.bucket, loc.key)


@pytest.mark.parametrize("uri", [
    "http://bucket/key", "s3://bucket", "s3://bucket/", "s3://Bucket/key", "s3://b/key",
    "s3://192.168.1.1/key", "s3://bu..cket/key", "s3://-bucket/key", "s3://bucket/a\nb",
    "", 42, None, "s3://" + "b" * 64 + "/k", "s3://bucket/" + "k" * 1025,
])
def test_bad_uris_name_the_field(uri) -> None:
    with pytest.raises(S3UriError, match=r"^images\[2\]: "):
        parse_s3_uri(uri, field="images[2]")


def test_prefix_uris_may_have_empty_keys() -> None:
    assert parse_s3_uri("s3://bucket", allow_empty_key=True) == S3Uri("bucket", "")
    assert parse_s3_uri("s3://bucket/dir/", allow_empty_key=True) == S3Uri("bucket", "dir/")


def test_allow_list_buckets_and_prefixes() -> None:
    allow = parse_allow_list(" in-a , in-b/photos/2024 ,, s3://in-c/x/ ")
    assert [str(e) for e in allow] == ["in-a", "in-b/photos/2024/", "in-c/x/"]
    for ok in ("s3://in-a/any/thing.jpg", "s3://in-b/photos/2024/a.jpg", "s3://in-c/x/y.png"):
        check_allowed(parse_s3_uri(ok), allow)
    for bad in ("s3://in-a-evil/x.jpg", "s3://in-b/photos/2024-old/a.jpg", "s3://in-b/a.jpg",
                "s3://other/x.jpg", "s3://in-b/photos/2024/../../secret.jpg"):
        with pytest.raises(S3UriError, match=r"^manifest line 3: "):
            check_allowed(parse_s3_uri(bad), allow, field="manifest line 3")
    with pytest.raises(S3UriError, match="INPUT_BUCKETS is empty"):
        check_allowed(parse_s3_uri("s3://in-a/x.jpg"), parse_allow_list(""))


# --- execution input -------------------------------------------------------------------------
@pytest.mark.parametrize(("event", "field"), [
    ({}, "images|prefix|manifest"),
    ({"images": ["s3://in-a/x.jpg"], "manifest": "s3://in-a/m.json"}, "images|prefix|manifest"),
    ({"images": []}, "images"),
    ({"images": "s3://in-a/x.jpg"}, "images"),
    ({"images": ["s3://in-a/x.jpg", "s3:/in-a/y.jpg"]}, "images[1]"),
    ({"prefix": "in-a/photos/"}, "prefix"),
    ({"manifest": "s3://in-a"}, "manifest"),
    ({"images": ["s3://in-a/x.jpg"], "score": 1.5}, "score"),
    ({"images": ["s3://in-a/x.jpg"], "iou": True}, "iou"),
    ({"images": ["s3://in-a/x.jpg"], "score": 10**400}, "score"),
    ({"images": ["s3://in-a/x.jpg"], "resize": "fill"}, "resize"),
    ({"images": ["s3://in-a/x.jpg"], "batch_id": "../etc"}, "batch_id"),
    ({"images": ["s3://in-a/x.jpg"], "batch_id": "ok\n"}, "batch_id"),
    ({"images": ["s3://in-a/x.jpg"], "image": 1}, "image"),
    (["s3://in-a/x.jpg"], "execution input"),
])
def test_execution_input_errors_name_the_field(event, field: str) -> None:
    with pytest.raises(InputValidationError) as info:
        m.ExecutionInput.from_event(event)
    assert str(info.value).startswith(f"{field}: "), str(info.value)


def test_plan_event_wrapped_or_bare() -> None:
    bare = load_event("plan_prefix")
    wrapped = m.PlanEvent.from_event({"input": bare, "execution_name": "run-1",
                                      "execution_arn": "arn:x"})
    assert wrapped.input == m.PlanEvent.from_event(bare).input
    assert wrapped.execution_name == "run-1"
    assert m.PlanEvent.from_event(wrapped.to_dict()) == wrapped


# --- stage messages ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "cls"), [
    ("preprocess", m.Batch), ("infer", m.Batch), ("postprocess", m.Batch), ("store", m.Batch),
    ("store_failure", m.BatchFailure), ("summarize", m.SummarizeEvent),
])
def test_sample_events_parse_and_round_trip(name: str, cls) -> None:
    msg = cls.from_event(load_event(name))
    assert cls.from_event(json.loads(json.dumps(msg.to_dict()))) == msg


def test_the_batcher_envelope_and_the_carried_form_are_one_batch() -> None:
    """Preprocess reads the ItemBatcher's ``{"BatchInput", "Items"}``; every later stage the
    carried form, with the same deterministic child id."""
    envelope = load_event("preprocess")
    first = m.Batch.from_event(envelope)
    assert first.child_id == m.child_id_for([it["image_id"] for it in envelope["Items"]])
    assert first.batch_id == envelope["BatchInput"]["batch_id"]
    later = m.Batch.from_event(load_event("store"))
    assert later.child_id == first.child_id
    assert [it.image_id for it in later.items] == [it.image_id for it in first.items]
    assert [it.ok for it in later.items] == [True, True, False] and len(later.pending) == 2


def max_batch() -> m.Batch:
    """The largest message a child state can carry: BatchSize's maximum of images with the
    longest keys S3 allows, every stage's timings and a maximal per-image error."""
    key = "k" * (1024 - 10)
    items = tuple(m.ImageItem(
        image_id=f"{i:020d}", uri=f"s3://{'b' * 63}/{key}{i:05d}.jpg", width=99999,
        height=99999, transform={"mode": "letterbox", "src_hw": [99999, 99999],
                                 "dst_hw": [608, 608], "scale_xy": [0.1 / 3, 0.1 / 3],
                                 "pad_xy": [123.45678, 123.45678]},
        timings_ms={s: 123456.7 for s in m.FAILURE_STAGES},
        error=m.item_error("postprocess", "InputValidationError", "x" * 50_000))
        for i in range(m.MAX_BATCH_ITEMS))
    return m.Batch(batch_id="b" * 80, params=m.Params(0.25, 0.45, "letterbox"), items=items,
                   child_id=m.child_id_for([it.image_id for it in items]),
                   execution_arn="arn:aws:states:us-east-1:123456789012:execution:" + "x" * 160,
                   model_ref=m.ModelRef("s3://" + "m" * 63 + "/" + key, '"' + "e" * 40 + '"',
                                        '"' + "e" * 40 + '"'),
                   keys={n: "tmp/" + "b" * 80 + "/0123456789abcdef/x.npz"
                         for n in ("inputs", "heads", "detections")},
                   model={"name": "n" * 100, "precision": "fp32", "weights_sha256": "0" * 64},
                   stage_ms={s: 123456.7 for s in m.FAILURE_STAGES},
                   spans_ms={s: [1796315519172.3, 1796315519277.0] for s in m.FAILURE_STAGES})


def test_a_full_batch_stays_far_below_the_256_kib_state_limit() -> None:
    """Plus the Catch's ``{"Error", "Cause"}`` (a Lambda error: message + stack trace, cut by
    Step Functions at 32 KiB) the worst child state input is still under 192 KiB."""
    batch = max_batch()
    size = len(json.dumps(batch.to_dict()).encode())
    cause = {"Error": "States.TaskFailed", "Cause": "c" * 32 * 1024}
    failure = len(json.dumps(batch.to_dict() | {"stage": "infer", "error": cause}).encode())
    assert size < 160 * 1024 and failure < 192 * 1024, (size, failure)
    assert m.Batch.from_event(json.loads(json.dumps(batch.to_dict()))) == batch


@pytest.mark.parametrize(("change", "field"), [
    (lambda e: e["Items"][0].update(image_id="a/b"), "Items[].image_id"),
    (lambda e: e["Items"][0].update(image_id=""), "Items[].image_id"),
    (lambda e: e["Items"].append(dict(e["Items"][0])), "Items"),
    (lambda e: e.update(Items=[]), "Items"),
    (lambda e: e["BatchInput"].update(params={"score": 0.2}), "params.iou"),
    (lambda e: e["BatchInput"].update(batch_id=None), "batch_id"),
    (lambda e: e.update(Items=[e["Items"][0]] * (m.MAX_BATCH_ITEMS + 1)), "Items"),
])
def test_batch_messages_reject_bad_fields_by_name(change, field: str) -> None:
    event = load_event("preprocess")
    change(event)
    with pytest.raises(InputValidationError) as info:
        m.Batch.from_event(event)
    assert str(info.value).startswith(field), str(info.value)


def test_all_sample_events_exist() -> None:
    assert {"plan_images", "plan_prefix", "plan_manifest", "preprocess", "infer",
            "postprocess", "store", "store_failure", "summarize",
            "batch_samples"} <= set(list_events())


# --- caught errors -------------------------------------------------------------------------
def test_lambda_cause_is_parsed() -> None:
    cause = {"errorType": "ImageDecodeError", "errorMessage": "s3://in/x.jpg: not an image",
             "stackTrace": ["  File app.py"]}
    err = m.CaughtError.from_event({"Error": "ImageDecodeError", "Cause": json.dumps(cause)})
    assert err.type == "ImageDecodeError"
    assert "not an image" in err.message and "stackTrace" not in err.message


@pytest.mark.parametrize(("error", "type_", "message"), [
    ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout", ""),
    ({"Error": "States.Timeout"}, "States.Timeout", ""),
    ({"Error": "Lambda.Unknown", "Cause": "The cause is not JSON"}, "Lambda.Unknown",
     "The cause is not JSON"),
    ({"Error": "", "Cause": json.dumps({"errorType": "ModelError", "errorMessage": "m"})},
     "ModelError", "m"),
    ({"type": "ObjectNotFoundError", "message": "gone"}, "ObjectNotFoundError", "gone"),
    ({}, "Unknown", ""),
])
def test_caught_error_shapes(error: dict, type_: str, message: str) -> None:
    err = m.CaughtError.from_event(error)
    assert (err.type, err.message) == (type_, message)


def test_failure_event_needs_a_known_stage() -> None:
    event = load_event("store_failure") | {"stage": "upload"}
    with pytest.raises(InputValidationError, match=r"^stage: "):
        m.BatchFailure.from_event(event)
    assert m.is_failure_event(load_event("store_failure"))
    assert not m.is_failure_event(load_event("store"))


def test_long_error_messages_are_truncated() -> None:
    err = m.CaughtError.from_event({"Error": "X", "Cause": "y" * 10_000})
    assert len(err.message) == m.MAX_ERROR_MESSAGE


# --- ids, manifests, config ----------------------------------------------------------------
def test_image_id_is_deterministic_and_key_safe() -> None:
    a = image_id_for("s3://in-a/ü x.jpg")
    assert a == image_id_for("s3://in-a/ü x.jpg") != image_id_for("s3://in-a/u x.jpg")
    assert len(a) == 20 and a.isalnum()


@pytest.mark.parametrize(("name", "expected"), [
    ("run-2024-01-01", "run-2024-01-01"), ("a b/c:d", "a-b-c-d"), ("x" * 100, "x" * 80)])
def test_batch_id_from_execution_name(name: str, expected: str) -> None:
    assert batch_id_from_name(name) == expected
    assert m.BATCH_ID_RE.fullmatch(batch_id_from_name(None))


def test_manifest_json_text_and_csv() -> None:
    as_json = parse_manifest(json.dumps(["s3://a/x.jpg", {"uri": "s3://a/y.jpg"}]))
    assert as_json == [("s3://a/x.jpg", "manifest[0]"), ("s3://a/y.jpg", "manifest[1]")]
    text = "\ufeff# my images\ns3://a/x.jpg\n\n  s3://a/with space.jpg  \n"
    assert parse_manifest(text, name="m.txt") == [("s3://a/x.jpg", "manifest line 2"),
                                                  ("s3://a/with space.jpg", "manifest line 4")]
    csv = 'uri,label\ns3://a/x.jpg,dog\n"s3://a/comma, name.jpg",cat\n'
    assert [u for u, _ in parse_manifest(csv, name="m.csv")] == [
        "s3://a/x.jpg", "s3://a/comma, name.jpg"]
    with pytest.raises(InputValidationError, match=r"^manifest: "):
        parse_manifest("[not json", name="m.json")
    with pytest.raises(InputValidationError, match=r"^manifest: JSON nested too deeply"):
        parse_manifest("[" * 100_000 + "]" * 100_000, name="m.json")


def test_config_from_env_and_required_settings() -> None:
    cfg = StageConfig.from_env({"RESULTS_BUCKET": "art", "SCORE_THRESHOLD": "0.5",
                                "INPUT_BUCKETS": "in-a,in-b/p", "INFER_THREADS": "",
                                "INTERMEDIATE_PREFIX": "scratch"})
    assert (cfg.bucket, cfg.score, cfg.infer_threads) == ("art", 0.5, None)
    assert cfg.intermediate_prefix == "scratch/" and len(cfg.input_buckets) == 2
    with pytest.raises(InputValidationError, match="RESULTS_TABLE"):
        cfg.require("bucket", "table")
    with pytest.raises(InputValidationError, match=r"^environment RESIZE_MODE: "):
        StageConfig.from_env({"RESIZE_MODE": "fill"})
    with pytest.raises(InputValidationError, match=r"^environment SCORE_THRESHOLD: "):
        StageConfig.from_env({"SCORE_THRESHOLD": "high"})
