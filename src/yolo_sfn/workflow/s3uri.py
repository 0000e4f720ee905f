"""``s3://bucket/key`` parsing, formatting and the input allow-list.

Keys are taken literally: no URL-decoding, so spaces, ``+``, ``%`` and any unicode are
part of the key. Bucket names follow the S3 naming rules (3-63 chars, lowercase letters,
digits, ``.`` and ``-``, start and end with a letter or digit, no ``..``, not an IP).

Allow-list entries (``INPUT_BUCKETS``, comma separated) are ``bucket`` (the whole bucket)
or ``bucket/prefix``. A prefix entry matches whole path segments: ``photos/2024`` allows
``photos/2024/a.jpg`` but not ``photos/2024-old/a.jpg``. An empty allow-list allows nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from yolo_sfn.errors import S3UriError

SCHEME = "s3://"
MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return format_s3_uri(self.bucket, self.key)

    def to_dict(self) -> dict:
        return {"bucket": self.bucket, "key": self.key}


def validate_bucket(bucket: str, *, field: str = "bucket") -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
        raise S3UriError(f"{field}: invalid S3 bucket name {bucket!r}")
    if ".." in bucket or _IP_RE.match(bucket):
        raise S3UriError(f"{field}: invalid S3 bucket name {bucket!r}")
    return bucket


def validate_key(key: str, *, field: str = "key", allow_empty: bool = False) -> str:
    if not isinstance(key, str):
        raise S3UriError(f"{field}: S3 key must be a string, got {type(key).__name__}")
    if not key and not allow_empty:
        raise S3UriError(f"{field}: S3 key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3UriError(f"{field}: S3 key longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL_RE.search(key):
        raise S3UriError(f"{field}: S3 key contains control characters: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise S3UriError(f"{field}: S3 key is not valid unicode: {key!r}") from None
    return key


def parse_s3_uri(uri: object, *, field: str = "uri", allow_empty_key: bool = False) -> S3Uri:
    """``"s3://bucket/key"`` -> :class:`S3Uri`; :class:`S3UriError` naming ``field`` if bad.

    ``allow_empty_key`` accepts ``s3://bucket`` and ``s3://bucket/`` (prefixes).
    """
    if not isinstance(uri, str):
        raise S3UriError(f"{field}: expected an s3:// URI string, got {type(uri).__name__}")
    if not uri.startswith(SCHEME):
        raise S3UriError(f"{field}: not an s3:// URI: {uri[:200]!r}")
    rest = uri[len(SCHEME):]
    bucket, sep, key = rest.partition("/")
    validate_bucket(bucket, field=field)
    if not sep and not allow_empty_key:
        raise S3UriError(f"{field}: S3 URI has no key: {uri[:200]!r}")
    validate_key(key, field=field, allow_empty=allow_empty_key)
    return S3Uri(bucket, key)


def split_s3_uri(uri: object) -> tuple[str, str]:
    """``"s3://bucket/key"`` -> ``("bucket", "key")``, leniently: any non-empty bucket, the key
    may be empty (``s3://bucket`` or a prefix). For URIs this program made or that AWS checks;
    :func:`parse_s3_uri` is the validating parser for input."""
    if not isinstance(uri, str) or not uri.startswith(SCHEME) or len(uri) <= len(SCHEME):
        raise S3UriError(f"{uri!r}: not an s3:// URI")
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket:
        raise S3UriError(f"{uri!r}: no bucket")
    return bucket, key


def format_s3_uri(bucket: str, key: str) -> str:
    return f"{SCHEME}{bucket}/{key}"


@dataclass(frozen=True)
class AllowEntry:
    bucket: str
    prefix: str  # "" (whole bucket) or ends with "/"

    def allows(self, uri: S3Uri) -> bool:
        return uri.bucket == self.bucket and uri.key.startswith(self.prefix)

    def __str__(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def parse_allow_list(value: str | Iterable[str] | None) -> tuple[AllowEntry, ...]:
    """``"bucket-a,bucket-b/some/prefix"`` -> entries. Blank entries are ignored."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    entries = []
    for raw in items:
        item = raw.strip()
        if item.startswith(SCHEME):
            item = item[len(SCHEME):]
        if not item:
            continue
        bucket, _, prefix = item.partition("/")
        validate_bucket(bucket, field="INPUT_BUCKETS")
        prefix = prefix.strip("/")
        entries.append(AllowEntry(bucket, prefix + "/" if prefix else ""))
    return tuple(entries)


def has_dot_segments(key: str) -> bool:
    """``a/../b`` or ``a/./b``: S3 keeps such keys literally, but any hop that normalises
    the request path (RFC 3986 remove_dot_segments) would fetch a different object."""
    return any(seg in (".", "..") for seg in key.split("/"))


def check_allowed(uri: S3Uri, allow: Iterable[AllowEntry], *, field: str = "uri") -> S3Uri:
    """Raise :class:`S3UriError` naming ``field`` unless ``uri`` is inside the allow-list.
    Keys with ``.``/``..`` segments are never allowed (they could leave the prefix)."""
    allow = tuple(allow)
    if has_dot_segments(uri.key):
        raise S3UriError(f"{field}: {uri} has '.' or '..' path segments")
    if any(entry.allows(uri) for entry in allow):
        return uri
    allowed = ", ".join(str(e) for e in allow) or "nothing (INPUT_BUCKETS is empty)"
    raise S3UriError(f"{field}: {uri} is outside the allowed input locations ({allowed})")
