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
    ("preprocess", m.ImageTask), ("infer", m.Preprocessed), ("postprocess", m.Inferred),
    ("store", m.Postprocessed), ("store_failure", m.FailureEvent),
    ("summarize", m.SummarizeEvent),
])
def test_sample_events_parse_and_round_trip(name: str, cls) -> None:
    msg = cls.from_event(load_event(name))
    assert cls.from_event(json.loads(json.dumps(msg.to_dict()))) == msg


def test_each_stage_message_carries_the_previous_one() -> None:
    post = m.Postprocessed.from_event(load_event("store"))
    assert m.ImageTask.from_event(post.to_dict()).image_id == post.image_id
    assert m.Inferred.from_event(post.to_dict()).heads_key == post.heads_key
    assert len(json.dumps(post.to_dict())) < 4096  # keys, not tensors


@pytest.mark.parametrize(("field", "value"), [
    ("image_id", "a/b"), ("image_id", ""), ("uri", "x"), ("params", {"score": 0.2}),
    ("batch_id", None),
])
def test_stage_messages_reject_bad_fields_by_name(field: str, value) -> None:
    event = load_event("preprocess") | {field: value}
    with pytest.raises(InputValidationError) as info:
        m.ImageTask.from_event(event)
    assert str(info.value).startswith(field), str(info.value)


def test_all_sample_events_exist() -> None:
    assert {"plan_images", "plan_prefix", "plan_manifest", "preprocess", "infer",
            "postprocess", "store", "store_failure", "summarize",
            "batch_samples"} <= set(list_events())


# --- caught errors -------------------------------------------------------------------------
def test_lambda_cause_is_parsed() -> None:
    err = m.CaughtError.from_event(load_event("store_failure")["error"])
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
        m.FailureEvent.from_event(event)
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
