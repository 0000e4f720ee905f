"""The handlers' S3 client, short-circuited to moto's S3 backend for the hot calls.

Each stage's ``get_object`` / ``put_object`` / ``head_object`` through botocore and moto's
HTTP emulation costs 2 to 13 ms of CPU (request serialisation, body checksums, werkzeug
request, XML/headers response); a yolov3-tiny image makes ~9 of them. ``DirectS3`` calls
``moto.s3.models.S3Backend`` in-process for those three operations and delegates every
other attribute (paginators, ``download_file``, ``meta``, ``exceptions``) to a real boto3
client on the same moto. Objects land in the same moto S3 (keys, bodies, Content-Type), and
errors are raised as the ``botocore.exceptions.ClientError`` botocore would raise (code and
HTTP status), so ``yolo_sfn.workflow.io``'s error mapping is unchanged.
"""

from __future__ import annotations

import io
from typing import Any

from botocore.exceptions import ClientError

from yolo_sfn.local.compat import S3_MODELS

ACCOUNT_ID = "123456789012"  # moto's default account (the engine sets no other)
PARTITION = "aws"
_STATUS = {"NoSuchBucket": 404, "NoSuchKey": 404, "AccessDenied": 403}


def _client_error(op: str, code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}},
        op,
    )


class _Response(dict):
    """A botocore-shaped response whose ``"ETag"`` is computed on first access.

    moto's ETag is an MD5 of the whole body (6 ms for YOLOv4-416's 3.6 MB heads, on every
    intermediate written and read back); the stages never read it, so it is only computed for
    a caller that asks (``resp["ETag"]``, ``resp.get("ETag")``, ``"ETag" in resp``). Until then
    ``keys()``, iteration, ``len`` and ``dict(resp)`` do not include it.
    """

    def __init__(self, obj: Any, fields: dict) -> None:
        super().__init__(fields)
        self._obj = obj

    def __missing__(self, name: str) -> Any:
        if name != "ETag":
            raise KeyError(name)
        self["ETag"] = value = self._obj.etag
        return value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 - this *is* get()

    def __contains__(self, name: object) -> bool:
        return name == "ETag" or dict.__contains__(self, name)


class DirectS3:
    """A boto3 S3 client whose get/put/head_object go straight to moto's backend."""

    def __init__(self, client: Any) -> None:
        import importlib

        self._client = client
        self._backends = importlib.import_module(S3_MODELS).s3_backends

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def _backend(self) -> Any:
        return self._backends[ACCOUNT_ID][PARTITION]

    def _call(self, op: str, fn: Any, *args: Any) -> Any:
        from moto.core.exceptions import ServiceException

        try:
            return fn(*args)
        except ServiceException as e:  # moto's S3 errors: string code, status from the model
            code = str(e.code)
            raise _client_error(op, code, e.message, _STATUS.get(code, 400)) from None

    def _key(self, op: str, bucket: str, key: str, head: bool) -> Any:
        backend = self._backend
        obj = self._call(op, backend.head_object if head else backend.get_object, bucket, key)
        if obj is None:
            if head:  # HEAD has no body: botocore reports the bare status as the code
                raise _client_error(op, "404", "Not Found", 404)
            raise _client_error(op, "NoSuchKey", "The specified key does not exist.", 404)
        return obj

    def put_object(self, *, Bucket: str, Key: str, Body: Any = b"",
                   ContentType: str | None = None, **extra: Any) -> dict:
        if extra:
            return self._client.put_object(Bucket=Bucket, Key=Key, Body=Body,
                                           **({"ContentType": ContentType} if ContentType
                                              else {}), **extra)
        data = Body.read() if hasattr(Body, "read") else Body
        if isinstance(data, str):
            data = data.encode("utf-8")
        new_key = self._call("PutObject", self._backend.put_object, Bucket, Key, bytes(data))
        if ContentType:
            new_key.set_metadata({"Content-Type": ContentType})
        return _Response(new_key, {"ResponseMetadata": {"HTTPStatusCode": 200}})

    def get_object(self, *, Bucket: str, Key: str, **extra: Any) -> dict:
        if extra:
            return self._client.get_object(Bucket=Bucket, Key=Key, **extra)
        obj = self._key("GetObject", Bucket, Key, head=False)
        data = obj.value
        return _Response(obj, {
            "Body": io.BytesIO(data), "ContentLength": len(data),
            "ContentType": obj.metadata.get("Content-Type", "binary/octet-stream"),
            "ResponseMetadata": {"HTTPStatusCode": 200}})

    def head_object(self, *, Bucket: str, Key: str, **extra: Any) -> dict:
        if extra:
            return self._client.head_object(Bucket=Bucket, Key=Key, **extra)
        obj = self._key("HeadObject", Bucket, Key, head=True)
        return {"ContentLength": obj.size, "ETag": obj.etag,
                "ContentType": obj.metadata.get("Content-Type", "binary/octet-stream"),
                "ResponseMetadata": {"HTTPStatusCode": 200}}
