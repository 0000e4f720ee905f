"""Fuzz ``yolo_sfn.workflow.s3uri``: parsing round-trips and the input allow-list holds.

Properties:
* any value -> ``parse_s3_uri`` returns an ``S3Uri`` or raises ``S3UriError``, nothing else;
  a parsed URI formats back to exactly the input (keys are literal, never URL-decoded);
* valid ``(bucket, key)`` -> ``format`` -> ``parse`` is the identity;
* an allowed URI is in an allowed bucket (exact name: ``bucket-evil`` is not ``bucket``) and
  under an allowed prefix by whole segments (``a/b`` does not allow ``a/bc/x``);
* the allow-list cannot be escaped with dot segments: if a key is allowed, the key that S3
  sees after any hop normalises the request URL (RFC 3986 remove_dot_segments, as urllib3,
  browsers and CDNs do) is allowed too. Percent-encoded dots are safe: botocore sends ``%``
  as ``%25``, so ``%2e%2e`` stays a literal key.
"""

from __future__ import annotations

import string
from urllib.parse import quote, unquote

import pytest
from fuzz_profiles import fuzz_settings
from hypothesis import assume, example, given
from hypothesis import strategies as st

s3uri = pytest.importorskip("yolo_sfn.workflow.s3uri")
from yolo_sfn.errors import S3UriError  # noqa: E402

BUCKET_CHARS = string.ascii_lowercase + string.digits
buckets = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]\Z").filter(
    lambda b: ".." not in b and not all(p.isdigit() for p in b.split("."))
)
key_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60
)
# keys built from path-ish pieces so that dot segments, doubled slashes and lookalikes occur
segments = st.sampled_from(
    ["a", "b", "bc", "b-old", ".", "..", "...", "", "%2e%2e", "%2E", "x.jpg", "ü", " ", "+"]
)
path_keys = st.lists(segments, min_size=1, max_size=8).map("/".join).filter(bool)
keys = st.one_of(key_text, path_keys)


def wire_key(key: str) -> str:
    """The key S3 receives if a hop normalises botocore's request path (dot segments)."""
    path = "/" + quote(key, safe="/~")  # botocore's S3 key encoding
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if path.endswith(("/.", "/..")):
        out.append("")
    return unquote("/".join(out))


def allowed(uri, entries) -> bool:
    try:
        s3uri.check_allowed(uri, entries)
    except S3UriError:
        return False
    return True


@fuzz_settings()
@given(st.one_of(st.text(max_size=200), st.builds(lambda b, k: f"s3://{b}/{k}", buckets, keys),
                 st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=2)))
@example("s3://bucket")
@example("s3:///key")
@example("s3://Bucket/key")
@example("s3://192.168.0.1/key")
@example("S3://bucket/key")
@example("s3://bucket/\x00")
@example("s3://bucket/\ud800")
def test_parse_any_value(value) -> None:
    try:
        uri = s3uri.parse_s3_uri(value)
    except S3UriError as e:
        assert str(e).startswith("uri:"), f"error does not name the field: {e}"
        return
    assert str(uri) == value, "parsed URI does not format back to the input"
    assert uri.key and "/" not in uri.bucket


@fuzz_settings()
@given(buckets, keys)
def test_round_trip(bucket: str, key: str) -> None:
    assume(len(key.encode("utf-8")) <= s3uri.MAX_KEY_BYTES)
    uri = s3uri.format_s3_uri(bucket, key)
    parsed = s3uri.parse_s3_uri(uri)
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert str(parsed) == uri


@fuzz_settings()
@given(buckets, st.sampled_from(["", "a", "a/b", "a/b/", "/a/b/"]), buckets, keys)
@example("bucket", "", "bucket-evil", "x.jpg")
@example("bucket", "", "evil-bucket", "x.jpg")
@example("bucket", "", "bucket.evil", "x.jpg")
@example("bucket", "a/b", "bucket", "a/bc/x.jpg")
@example("bucket", "a/b", "bucket", "a/b")
@example("bucket", "a/b", "bucket", "a/b-old/x.jpg")
def test_allow_list_buckets_and_prefix_segments(a_bucket, a_prefix, bucket, key) -> None:
    entry = f"{a_bucket}/{a_prefix}" if a_prefix else a_bucket
    entries = s3uri.parse_allow_list(entry)
    uri = s3uri.S3Uri(bucket, key)
    if not allowed(uri, entries):
        return
    assert bucket == a_bucket, f"{uri} allowed by {entry!r}: different bucket"
    prefix = a_prefix.strip("/")
    if prefix:
        assert key.startswith(prefix + "/"), f"{uri} allowed by {entry!r}: not under the prefix"


@fuzz_settings()
@given(st.text(max_size=100))
@example(",,,")
@example("bucket/../other")
@example("s3://bucket/a/b/")
def test_parse_allow_list_any_text(value: str) -> None:
    try:
        entries = s3uri.parse_allow_list(value)
    except S3UriError:
        return
    assert all(isinstance(e, s3uri.AllowEntry) for e in entries)
    assert all(e.prefix == "" or e.prefix.endswith("/") for e in entries)


@fuzz_settings()
@given(st.sampled_from(["a", "a/b"]), path_keys)
def test_allow_list_not_escaped_by_dot_segments(prefix: str, rest: str) -> None:
    key = f"{prefix}/{rest}"  # literally under the prefix: the allow-list's "yes" cases
    entries = s3uri.parse_allow_list(f"bucket/{prefix}")
    uri = s3uri.S3Uri("bucket", key)
    if not allowed(uri, entries):
        return
    seen = s3uri.S3Uri("bucket", wire_key(key))
    assert allowed(seen, entries), (
        f"{uri} passes the allow-list 'bucket/{prefix}', but a URL-normalising hop "
        f"requests {seen} instead"
    )


@fuzz_settings(50)
@given(buckets, keys)
def test_empty_allow_list_allows_nothing(bucket: str, key: str) -> None:
    assert not allowed(s3uri.S3Uri(bucket, key), s3uri.parse_allow_list(""))
    assert not allowed(s3uri.S3Uri(bucket, key), s3uri.parse_allow_list(None))


@pytest.mark.parametrize(
    ("prefix", "key"),
    [("a/b", "a/b/../c/secret.jpg"), ("a/b", "a/b/./../../x.jpg"), ("a", "a/..")],
)
def test_dot_segments_cannot_leave_the_prefix(prefix: str, key: str) -> None:
    """Finding F3 (fixed): check_allowed used to compare the literal key only."""
    entries = s3uri.parse_allow_list(f"bucket/{prefix}")
    uri = s3uri.S3Uri("bucket", key)
    assert not allowed(uri, entries) or allowed(s3uri.S3Uri("bucket", wire_key(key)), entries)
