"""Fuzz ``yolo_sfn.model.meta.ModelMeta.from_dict``: the sidecar is user-editable JSON read
from S3 by Preprocess/Postprocess (``workflow.model_cache.load_meta``).

Contract: any JSON value -> a ``ModelMeta`` or a ``ModelError`` naming the source; and an
accepted sidecar describes a usable detector (finite positive sizes, strides, anchors and
``scale_x_y``), otherwise the workflow emits NaN or inverted boxes without any error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fuzz_profiles import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

meta_mod = pytest.importorskip("yolo_sfn.model.meta")
from yolo_sfn.errors import ModelError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NAMES = (ROOT / "testdata" / "coco.names").read_text().split("\n")[:80]
VALID = {
    "format": meta_mod.FORMAT, "format_version": meta_mod.FORMAT_VERSION,
    "name": "yolov3-tiny", "input_size": [416, 416], "num_classes": 80, "names": NAMES,
    "heads": [{"grid": [13, 13], "stride": 32, "anchors": [[81, 82], [135, 169], [344, 319]]},
              {"grid": [26, 26], "stride": 16, "anchors": [[10, 14], [23, 27], [37, 58]]}],
    "precision": "fp32",
}
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c,
                                                                 max_size=3)),
    max_leaves=10)
fields = st.sampled_from(["name", "input_size", "num_classes", "names", "heads", "precision",
                          "nms_kind", "letter_box", "format", "format_version", "beta_nms"])
head_fields = st.sampled_from(["grid", "stride", "anchors", "scale_x_y", "new_coords"])
values = st.one_of(json_values, st.sampled_from(
    [0, -1, 1e300, float("nan"), float("inf"), [], [0, 0], [[-5, 5]], "80", None]))


def parse(d):
    try:
        return meta_mod.ModelMeta.from_dict(d, source="s3://models/m.tflite.json")
    except ModelError as e:
        assert "m.tflite.json" in str(e) or "model metadata" in str(e), str(e)
        return None


def usable(m) -> list[str]:
    """Why an accepted ModelMeta cannot describe a working detector (empty: fine)."""
    bad = []
    if not all(isinstance(v, int) and v > 0 for v in m.input_size):
        bad.append(f"input_size {m.input_size}")
    for i, h in enumerate(m.heads):
        if not (isinstance(h.stride, int) and h.stride > 0):
            bad.append(f"head {i} stride {h.stride}")
        if not h.anchors or not all(math.isfinite(x) and x > 0 for a in h.anchors for x in a):
            bad.append(f"head {i} anchors {h.anchors}")
        if not (math.isfinite(h.scale_x_y) and h.scale_x_y > 0):
            bad.append(f"head {i} scale_x_y {h.scale_x_y}")
    return bad


@fuzz_settings()
@given(json_values)
def test_any_json_sidecar(d) -> None:
    parse(d)


@st.composite
def near_valid(draw):
    d = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            d[draw(fields)] = draw(values)
        elif isinstance(d.get("heads"), list) and d["heads"]:
            head = d["heads"][draw(st.integers(0, len(d["heads"]) - 1))]
            if isinstance(head, dict):
                head[draw(head_fields)] = draw(values)
    return d


@fuzz_settings()
@given(near_valid())
def test_near_valid_sidecar(d) -> None:
    parse(d)


@pytest.mark.parametrize("d", [[], "x", None, 5], ids=["array", "string", "null", "number"])
def test_non_object_sidecar_is_a_model_error(d) -> None:
    """F12 (fixed): used to raise AttributeError."""
    parse(d)


@pytest.mark.parametrize(
    "head", [{"scale_x_y": float("nan")}, {"anchors": [[-1e30, 1e30]] * 3}, {"stride": 0}],
    ids=["scale-nan", "negative-anchors", "stride-0"])
def test_nonsensical_head_values_are_rejected(head) -> None:
    """F12 (fixed): used to be accepted, giving NaN or inverted boxes."""
    d = json.loads(json.dumps(VALID))
    d["heads"][0].update(head)
    m = parse(d)
    assert m is None or not usable(m), "a nonsensical sidecar was accepted"
    assert m is None, f"accepted although unusable: {usable(m)}"
