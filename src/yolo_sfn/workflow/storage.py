"""S3 object I/O with botocore errors mapped to the project's error types.

Every function takes an optional ``s3`` client (default: :func:`yolo_sfn.workflow.aws.client`).

Mapping (the class name is what Step Functions ``Retry``/``Catch`` see):
    NoSuchKey / NoSuchBucket / 404        -> ObjectNotFoundError   (permanent)
    AccessDenied / 403                    -> AccessDeniedError     (permanent)
    throttling / 5xx / connection errors  -> TransientAwsError     (the stage is retried)
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from yolo_sfn.errors import (
    AccessDeniedError,
    ImageTooLargeError,
    ObjectNotFoundError,
    TransientAwsError,
    YoloSfnError,
)
from yolo_sfn.workflow import aws
from yolo_sfn.workflow.s3uri import format_s3_uri

if TYPE_CHECKING:
    import numpy as np

NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}
TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "503", "500", "502", "504",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded",
}
CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError,
                     ConnectTimeoutError, ResponseStreamingError)


def map_error(err: Exception, *, what: str) -> Exception:
    """botocore exception -> project error (or ``err`` itself when it is not recognised)."""
    if isinstance(err, YoloSfnError):
        return err
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        msg = err.response.get("Error", {}).get("Message") or code
        if code in NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(f"{what}: not found ({code or status})")
        if code in DENIED_CODES or status == 403:
            return AccessDeniedError(f"{what}: access denied ({code or status})")
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientAwsError(f"{what}: {code or status}: {msg}")
        return err
    if isinstance(err, CONNECTION_ERRORS):
        return TransientAwsError(f"{what}: {type(err).__name__}: {err}")
    if isinstance(err, BotoCoreError | ConnectionError | TimeoutError):
        return TransientAwsError(f"{what}: {type(err).__name__}: {err}")
    return err


@contextmanager
def s3_errors(bucket: str, key: str, op: str) -> Iterator[None]:
    """Re-raise botocore errors inside the block as project errors naming the object."""
    try:
        yield
    except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as e:
        mapped = map_error(e, what=f"{op} {format_s3_uri(bucket, key)}")
        if mapped is e:
            raise
        raise mapped from e


def head_size(bucket: str, key: str, *, s3=None) -> int:
    """ContentLength of the object (bytes)."""
    s3 = s3 or aws.client("s3")
    with s3_errors(bucket, key, "head"):
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])


def get_bytes(bucket: str, key: str, *, s3=None, max_bytes: int | None = None) -> bytes:
    """Download an object (one GET). With ``max_bytes``, the GET response's ContentLength is
    checked before the body is read (no separate HEAD request), and the read stops there."""
    s3 = s3 or aws.client("s3")
    uri = format_s3_uri(bucket, key)
    with s3_errors(bucket, key, "get"):
        resp = s3.get_object(Bucket=bucket, Key=key)
        body = resp["Body"]
        size = int(resp.get("ContentLength") or 0)
        if max_bytes is not None and size > max_bytes:
            body.close()
            raise ImageTooLargeError(f"{uri}: object is {size} bytes, limit {max_bytes}")
        data = body.read() if max_bytes is None else body.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # grew between HEAD and GET
        raise ImageTooLargeError(f"{uri}: object exceeds limit {max_bytes} bytes")
    return data


def put_bytes(bucket: str, key: str, data: bytes, *, s3=None,
              content_type: str = "application/octet-stream") -> str:
    """Upload ``data``; returns the s3:// URI."""
    s3 = s3 or aws.client("s3")
    with s3_errors(bucket, key, "put"):
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return format_s3_uri(bucket, key)


MODEL_PART_BYTES = 64 * 1024 * 1024  # ranged GETs of a model download (boto3's default: 8 MiB)


def download_file(bucket: str, key: str, path: str, *, s3=None) -> str:
    """``s3://bucket/key`` -> the local file ``path``, in parallel ranged GETs of
    ``MODEL_PART_BYTES``: a 400 MB model is 7 GET requests per cold container, not 50."""
    from boto3.s3.transfer import TransferConfig

    s3 = s3 or aws.client("s3")
    config = TransferConfig(multipart_threshold=MODEL_PART_BYTES,
                            multipart_chunksize=MODEL_PART_BYTES)
    with s3_errors(bucket, key, "download"):
        s3.download_file(bucket, key, path, Config=config)
    return path


def get_json(bucket: str, key: str, *, s3=None, max_bytes: int | None = None):
    data = get_bytes(bucket, key, s3=s3, max_bytes=max_bytes)
    return json.loads(data.decode("utf-8"))


def put_json(bucket: str, key: str, obj, *, s3=None) -> str:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return put_bytes(bucket, key, data, s3=s3, content_type="application/json")


def get_npy(bucket: str, key: str, *, s3=None) -> np.ndarray:
    import numpy as np

    return np.load(io.BytesIO(get_bytes(bucket, key, s3=s3)), allow_pickle=False)


def put_npy(bucket: str, key: str, array: np.ndarray, *, s3=None) -> str:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return put_bytes(bucket, key, buf.getvalue(), s3=s3)


def get_npz(bucket: str, key: str, *, s3=None) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(io.BytesIO(get_bytes(bucket, key, s3=s3)), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (what ``np.load`` reads) with fixed member timestamps, in ``arrays`` order:
    the same arrays always give the same bytes (``np.savez`` stamps the current time), so a
    rerun of an EXPRESS child rewrites identical intermediates."""
    import zipfile

    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def put_npz(bucket: str, key: str, arrays: dict[str, np.ndarray], *, s3=None) -> str:
    return put_bytes(bucket, key, npz_bytes(arrays), s3=s3)
