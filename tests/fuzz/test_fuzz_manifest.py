"""Fuzz ``workflow.stages.parse_manifest``: the manifest is user data read from S3.

Any body (JSON array, CSV, one URI per line, or garbage) under any name must give a list of
``(value, label)`` pairs or an ``InputValidationError`` naming the manifest -- never another
exception (the Plan Lambda would report e.g. ``RecursionError`` instead of a clear error).
"""

from __future__ import annotations

import json

import pytest
from fuzz_profiles import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st

stages = pytest.importorskip("yolo_sfn.workflow.stages")
from yolo_sfn.errors import InputValidationError  # noqa: E402

names = st.sampled_from(["list.json", "list.csv", "list.txt", "LIST.CSV", "noext"])
uris = st.sampled_from(["s3://input-bucket/a.jpg", "s3://input-bucket/b c.jpg", "# comment",
                        "", "uri", "\ufeffs3://input-bucket/bom.jpg", '"s3://q/x.jpg"'])
bodies = st.one_of(
    st.text(max_size=300),
    st.lists(uris, max_size=6).map("\n".join),
    st.lists(uris, max_size=6).map(lambda xs: "uri,label\n" + "\n".join(f"{x},1" for x in xs)),
    st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5), uris),
                 lambda c: st.one_of(st.lists(c, max_size=3),
                                     st.dictionaries(st.sampled_from(["uri", "x"]), c,
                                                     max_size=2)),
                 max_leaves=8).map(json.dumps),
)


def check(body: str, name: str) -> None:
    try:
        rows = stages.parse_manifest(body, name=name)
    except InputValidationError as e:
        assert str(e).startswith("manifest"), str(e)
        return
    assert isinstance(rows, list)
    for _value, label in rows:
        assert isinstance(label, str) and label.startswith("manifest"), label


@fuzz_settings()
@given(bodies, names)
@example("[" * 5, "list.json")
@example('[{"uri": "s3://input-bucket/a.jpg"}, {"x": 1}, 3]', "list.json")
def test_any_manifest_body(body: str, name: str) -> None:
    check(body, name)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_manifest(depth: int) -> None:
    """F11 (fixed): json.loads raises RecursionError, not ValueError, on deep nesting."""
    check("[" * depth + "]" * depth, "list.json")


@pytest.mark.parametrize("body", ["s3://input-bucket/a.jpg\rs3://input-bucket/b.jpg\r",
                                  "uri\rs3://input-bucket/a.jpg", "\r0"],
                         ids=["cr-lines", "cr-header", "found-by-long-fuzz"])
def test_csv_manifest_with_cr_line_endings(body: str) -> None:
    """F13 (fixed): csv.reader raised _csv.Error on bare CR line endings."""
    check(body, "list.csv")


def test_csv_header_is_skipped_but_a_malformed_first_uri_is_kept() -> None:
    """A header row (no '/') is skipped; a header-less CSV whose first row is a malformed
    URI keeps it, so it is validated and named like any other row instead of dropped."""
    from yolo_sfn.workflow.stages import parse_manifest

    assert parse_manifest("uri\ns3://b/a.jpg\n", name="l.csv") == [
        ("s3://b/a.jpg", "manifest line 2")]
    assert parse_manifest("S3://b/x.jpg\ns3://b/a.jpg\n", name="l.csv") == [
        ("S3://b/x.jpg", "manifest line 1"), ("s3://b/a.jpg", "manifest line 2")]
