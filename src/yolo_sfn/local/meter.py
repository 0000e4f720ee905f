"""Count the AWS requests a local execution makes, as the deployed stack would be billed.

Every mocked AWS request of the process passes moto's ``BotocoreStubber`` (the botocore
``before-send`` hook moto registers on every client). ``Meter.installed()`` wraps it to count
requests by service and operation, and DynamoDB write units from the written items' sizes.
Requests made by the local engine's own clients (``tag_client``: the runner's uploads of local
images, its polling, its downloads of results) carry a marker header and are not counted: on AWS
the images are already in S3 and nobody polls from inside the stack.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STUBBER = "moto.core.botocore_stubber"
UNCOUNTED_HEADER = "X-Yolo-Sfn-Local-Runner"

S3_KINDS = {
    "GetObject": "s3_get",
    "HeadObject": "s3_head", "HeadBucket": "s3_head",
    "ListObjectsV2": "s3_list", "ListObjects": "s3_list", "ListObjectVersions": "s3_list",
    "PutObject": "s3_put", "CopyObject": "s3_put", "CreateMultipartUpload": "s3_put",
    "UploadPart": "s3_put", "CompleteMultipartUpload": "s3_put",
}
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")


def tag_client(client: Any) -> Any:
    """Mark every request of ``client`` as the local engine's own (not counted)."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers[UNCOUNTED_HEADER] = "1"

    client.meta.events.register("before-sign", add_header)
    return client


# --- DynamoDB item sizes (developer guide, "Item sizes and formats") -----------------------
def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1 + (1 if text.startswith("-") else 0)


def attribute_value_size(value: dict) -> int:
    """Bytes of one DynamoDB-JSON attribute value (``{"S": ...}``, ``{"M": {...}}``...)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(str(v))
    if kind == "B":
        return len(v) * 3 // 4 if isinstance(v, str) else len(v)  # base64 on the wire
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_value_size(e) for k, e in v.items())
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(str(s)) for s in v)
    if kind == "BS":
        return sum(len(s) * 3 // 4 for s in v)
    return 0


def item_size(item: dict) -> int:
    """Bytes of a DynamoDB-JSON item: attribute names plus values."""
    return sum(len(name.encode()) + attribute_value_size(val) for name, val in item.items())


def write_units(size_bytes: int) -> int:
    """On-demand write request units for one item write: one per started KB, at least 1."""
    return max(1, math.ceil(size_bytes / 1024))


def dynamodb_write_units(operation: str, body: dict) -> int:
    """Write units of one DynamoDB request (UpdateItem: key + the values it sets; AWS bills
    the larger of the item before and after, which a request alone does not show)."""
    if operation == "PutItem":
        return write_units(item_size(body.get("Item") or {}))
    if operation == "DeleteItem":
        return write_units(item_size(body.get("Key") or {}))
    if operation == "UpdateItem":
        values = body.get("ExpressionAttributeValues") or {}
        return write_units(item_size(body.get("Key") or {})
                           + sum(attribute_value_size(v) for v in values.values()))
    if operation == "BatchWriteItem":
        units = 0
        for requests in (body.get("RequestItems") or {}).values():
            for req in requests:
                put = (req.get("PutRequest") or {}).get("Item")
                key = (req.get("DeleteRequest") or {}).get("Key")
                units += write_units(item_size(put if put is not None else key or {}))
        return units
    return 0


class Meter:
    """Counts of counted requests: ``{"s3_get": n, ..., "dynamodb_write_units": n,
    "requests": {"service.Operation": n}}``; ``snapshot()`` copies them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def observe(self, event_name: str, request: Any) -> None:
        if request.headers.get(UNCOUNTED_HEADER):
            return
        parts = event_name.split(".")
        if len(parts) < 3:
            return
        service, operation = parts[1], parts[2]
        units = 0
        if service == "dynamodb" and operation in DYNAMODB_WRITES:
            try:
                units = dynamodb_write_units(operation, json.loads(request.body or b"{}"))
            except (ValueError, TypeError, AttributeError):
                units = 1
        with self._lock:
            name = f"{service}.{operation}"
            self.requests[name] = self.requests.get(name, 0) + 1
            kind = S3_KINDS.get(operation) if service == "s3" else None
            if kind:
                self.counts[kind] = self.counts.get(kind, 0) + 1
            if units:
                self.counts["dynamodb_write_units"] = \
                    self.counts.get("dynamodb_write_units", 0) + units

    def snapshot(self) -> dict:
        with self._lock:
            return {**self.counts, "requests": dict(self.requests)}

    @contextmanager
    def installed(self) -> Iterator[Meter]:
        cls = importlib.import_module(STUBBER).BotocoreStubber
        original = cls.__call__
        meter = self

        def __call__(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            if self.enabled:
                meter.observe(event_name, request)
            return original(self, event_name, request, **kwargs)

        # private hook: moto's before-send handler sees every mocked request of every client
        cls.__call__ = __call__
        try:
            yield self
        finally:
            cls.__call__ = original


def difference(after: dict, before: dict) -> dict:
    """``after - before`` for two ``Meter.snapshot()`` results."""
    out = {k: v - before.get(k, 0) for k, v in after.items() if k != "requests"}
    reqs = {k: v - before.get("requests", {}).get(k, 0)
            for k, v in after.get("requests", {}).items()}
    out["requests"] = {k: v for k, v in reqs.items() if v}
    return out
