"""Fuzz ``yolo_sfn.workflow.messages``: any JSON gives a message or an InputValidationError.

Every ``from_event`` parses untrusted JSON (the execution input comes from whoever may call
``StartExecution``; stage events from the previous state). Properties, for every message class:
* any JSON value, and any near-valid event (a valid one with fields deleted, retyped or
  replaced by random JSON) -> an instance or ``InputValidationError`` (``S3UriError`` is
  one), never ``KeyError``/``TypeError``/``OverflowError``...;
* the error message starts with the name of the offending field (``images[3]: ...``);
* a parsed message survives ``to_dict()`` -> JSON -> ``from_event`` unchanged;
* accepted ids and batch ids are exactly ``[A-Za-z0-9._-]`` (they become S3 keys and
  DynamoDB keys).
"""

from __future__ import annotations

import json
import re

import pytest
from fuzz_profiles import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

messages = pytest.importorskip("yolo_sfn.workflow.messages")
from yolo_sfn.errors import InputValidationError  # noqa: E402

ID_CHARS = re.compile(r"[A-Za-z0-9._-]+")

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
uris = st.sampled_from([
    "s3://input-bucket/a.jpg", "s3://input-bucket/dir/", "s3://input-bucket", "s3://bad",
    "s3://input-bucket/with space/ü.jpg", "http://x/y", "", "s3://in..put/x", "s3://b/\x00",
])
plausible = st.one_of(
    uris, st.lists(uris, max_size=3), st.floats(-1, 2), st.integers(-(10**400), 10**400),
    st.sampled_from(["stretch", "letterbox", "fill", "batch-1", "b\n", "../x", "a" * 81]),
    st.fixed_dictionaries({"bucket": st.sampled_from(["artifacts", "Bad", ""]),
                           "key": st.sampled_from(["k", "", "a/b.npy"])}),
    json_values,
)

PARAMS = {"score": 0.25, "iou": 0.45, "resize": "stretch"}
ITEM = {"image_id": "img-0001", "uri": "s3://input-bucket/a.jpg"}
ENVELOPE = {"BatchInput": {"batch_id": "b-1", "params": PARAMS, "execution_arn": "arn",
                           "model_ref": {"uri": "s3://models/m.tflite", "version": '"e"',
                                         "meta_version": '"f"'}},
            "Items": [ITEM, {"image_id": "img-0002", "uri": "s3://input-bucket/b.jpg"}]}
CARRIED = {"batch_id": "b-1", "params": PARAMS, "child_id": "0123456789abcdef",
           "items": [{**ITEM, "width": 768, "height": 576, "transform": {"mode": "stretch"},
                      "timings_ms": {"preprocess": 1.5}},
                     {"image_id": "img-0002", "uri": "s3://input-bucket/b.jpg",
                      "error": {"stage": "preprocess", "type": "ImageDecodeError",
                                "message": "m"}}],
           "keys": {"inputs": "tmp/b-1/0123456789abcdef/inputs.npz"}, "model": {"name": "m"},
           "stage_ms": {"preprocess": 3.0}, "spans_ms": {"preprocess": [1.0, 4.0]}}
VALID = {
    "ExecutionInput": {"images": ["s3://input-bucket/a.jpg"], "batch_id": "b-1", "score": 0.3,
                       "iou": 0.5, "resize": "letterbox"},
    "PlanEvent": {"input": {"prefix": "s3://input-bucket/dir/"}, "execution_name": "e",
                  "execution_arn": "arn:aws:states:us-east-1:1:execution:sm:e"},
    "Params": PARAMS,
    "PlanResult": {"batch_id": "b-1", "items": {"bucket": "artifacts", "key": "batches/b/i.json"},
                   "count": 3, "submitted": 4, "duplicates": 1, "params": PARAMS},
    "Batch": CARRIED,
    "Batch:envelope": ENVELOPE,
    "CaughtError": {"Error": "ImageDecodeError",
                    "Cause": json.dumps({"errorType": "ImageDecodeError", "errorMessage": "m"})},
    "BatchFailure": {**CARRIED, "stage": "infer",
                     "error": {"Error": "States.Timeout", "Cause": ""}},
    "SummarizeEvent": {"batch_id": "b-1", "items": "s3://artifacts/batches/b-1/items.json",
                       "execution_arn": "arn"},
}
CLASSES = [c for c in VALID if hasattr(messages, c.split(":")[0])]


@st.composite
def near_valid(draw) -> tuple[str, object]:
    name = draw(st.sampled_from(CLASSES))
    event = json.loads(json.dumps(VALID[name]))
    for _ in range(draw(st.integers(1, 3))):
        target = event
        inner = {"PlanEvent": "input", "Batch:envelope": "BatchInput"}.get(name)
        if inner and isinstance(event.get(inner), dict) and draw(st.booleans()):
            target = event[inner]  # (an earlier edit may have deleted/replaced it)
        elif "items" in event and isinstance(event["items"], list) and event["items"] \
                and isinstance(event["items"][0], dict) and draw(st.booleans()):
            target = event["items"][0]  # one image's state
        keys = [*sorted(target), "images", "prefix", "manifest", "extra", "stage", "error"]
        key = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(["delete", "replace", "replace"]))
        if op == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(plausible)
    return name, event


def parse(name: str, event: object):
    """from_event under the contract; returns the message or None (a clean rejection)."""
    cls = getattr(messages, name.split(":")[0])
    try:
        msg = cls.from_event(event)
    except InputValidationError as e:
        text = str(e)
        assert ": " in text, f"error does not name a field: {text!r}"
        return None
    return msg


def check_round_trip(name: str, msg) -> None:
    if not hasattr(msg, "to_dict"):
        return
    d = json.loads(json.dumps(msg.to_dict()))
    again = getattr(messages, name.split(":")[0]).from_event(d)
    # what crosses the state boundary is to_dict(): it must be a fixed point (an optional ""
    # may legitimately come back as None)
    assert json.loads(json.dumps(again.to_dict())) == d, (
        f"{name} changed on a round trip: {d} -> {again.to_dict()}")
    batch = getattr(msg, "batch", msg)
    items = getattr(batch, "items", ())
    ids = [getattr(batch, "batch_id", None), getattr(batch, "child_id", None),
           *(it.image_id for it in (items if isinstance(items, tuple) else ()))]
    for value in ids:
        if value is not None:
            assert ID_CHARS.fullmatch(value), f"{name} accepted the id {value!r}"


@pytest.mark.parametrize("name", CLASSES)
def test_valid_examples_parse(name: str) -> None:
    msg = parse(name, VALID[name])
    assert msg is not None, f"the valid {name} example is rejected"
    check_round_trip(name, msg)


@fuzz_settings()
@given(st.sampled_from(CLASSES), json_values)
def test_any_json(name: str, event) -> None:
    msg = parse(name, event)
    if msg is not None:
        check_round_trip(name, msg)


@fuzz_settings()
@given(near_valid())
def test_near_valid(case) -> None:
    name, event = case
    msg = parse(name, event)
    if msg is not None:
        check_round_trip(name, msg)


@pytest.mark.parametrize(
    ("event", "field"),
    [({}, "images|prefix|manifest"), ({"images": "s3://input-bucket/a.jpg"}, "images"),
     ({"images": []}, "images"), ({"images": ["s3://input-bucket/a.jpg", 3]}, "images[1]"),
     ({"prefix": 5}, "prefix"), ({"images": ["s3://input-bucket/a.jpg"], "score": "high"}, "score"),
     ({"images": ["s3://input-bucket/a.jpg"], "resize": "fill"}, "resize"),
     ({"imgs": ["s3://input-bucket/a.jpg"]}, "imgs"),
     ({"images": ["s3://input-bucket/a.jpg"], "prefix": "s3://input-bucket/"},
      "images|prefix|manifest"),
     ([], "execution input"), ("s3://input-bucket/a.jpg", "execution input")],
    ids=["missing", "wrong-type", "empty", "item-type", "prefix-type", "score-type",
         "resize-value", "typo", "two-sources", "array", "string"],
)
def test_execution_input_errors_name_the_field(event, field: str) -> None:
    with pytest.raises(InputValidationError) as info:
        messages.ExecutionInput.from_event(event)
    assert str(info.value).startswith(f"{field}:"), str(info.value)


# --- what fuzzing found (docs/RELIABILITY.md, findings F1, F2): regression tests ------------
@pytest.mark.parametrize(
    ("name", "event"),
    [("ExecutionInput", {"images": ["s3://input-bucket/a.jpg"], "score": 10**400}),
     ("Params", {"score": 0.5, "iou": -(10**309), "resize": "stretch"})],
    ids=["execution-score", "params-iou"],
)
def test_huge_integer_threshold_is_a_validation_error(name: str, event) -> None:
    """JSON integers are unbounded: float(10**400) raises OverflowError inside _fraction."""
    assert parse(name, event) is None


@pytest.mark.parametrize(
    ("name", "event"),
    [("ExecutionInput", {"images": ["s3://input-bucket/a.jpg"], "batch_id": "b-1\n"}),
     ("Batch:envelope", {**ENVELOPE, "Items": [{**ITEM, "image_id": "img-0001\n"}]})],
    ids=["batch_id", "image_id"],
)
def test_id_with_trailing_newline_is_rejected(name: str, event) -> None:
    """BATCH_ID_RE/IMAGE_ID_RE end in ``$``, which matches before a trailing newline."""
    assert parse(name, event) is None
