"""botocore errors -> project errors (what Step Functions Retry/Catch match on)."""

from __future__ import annotations

import io as _io

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from yolo_sfn.errors import (
    AccessDeniedError,
    ImageTooLargeError,
    ObjectNotFoundError,
    TransientAwsError,
)
from yolo_sfn.workflow import storage


@pytest.fixture
def s3():
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("NoSuchKey", 404, ObjectNotFoundError), ("404", 404, ObjectNotFoundError),
    ("NoSuchBucket", 404, ObjectNotFoundError), ("AccessDenied", 403, AccessDeniedError),
    ("403", 403, AccessDeniedError), ("SlowDown", 503, TransientAwsError),
    ("InternalError", 500, TransientAwsError), ("ServiceUnavailable", 503, TransientAwsError),
    ("Whatever", 502, TransientAwsError), ("RequestTimeout", 400, TransientAwsError),
])
def test_client_errors_are_mapped(code: str, status: int, expected: type) -> None:
    mapped = storage.map_error(client_error(code, status), what="get s3://b/k")
    assert type(mapped) is expected
    assert str(mapped).startswith("get s3://b/k")


def test_unknown_client_errors_pass_through() -> None:
    err = client_error("InvalidArgument", 400)
    assert storage.map_error(err, what="x") is err


@pytest.mark.parametrize("err", [
    EndpointConnectionError(endpoint_url="https://s3"),
    ReadTimeoutError(endpoint_url="https://s3"), ConnectionResetError("reset")])
def test_connection_errors_are_transient(err: Exception) -> None:
    assert isinstance(storage.map_error(err, what="x"), TransientAwsError)


def test_get_bytes_maps_errors_and_names_the_object(s3) -> None:
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        with pytest.raises(ObjectNotFoundError, match=r"s3://bkt/a b/ü\.jpg"):
            storage.get_bytes("bkt", "a b/ü.jpg", s3=s3)


class Body(StreamingBody):
    """A response body that records whether it was read."""

    read_calls = 0

    def read(self, amt=None):
        Body.read_calls += 1
        return super().read(amt)


def test_size_limit_is_checked_from_the_get_response_before_reading(s3) -> None:
    """One GET, no HEAD (only get_object is stubbed): the body of an oversized object is
    closed unread."""
    Body.read_calls = 0
    body = Body(_io.BytesIO(b"x" * 11), 11)
    with Stubber(s3) as stub:
        stub.add_response("get_object", {"Body": body, "ContentLength": 11},
                          {"Bucket": "b", "Key": "k"})
        with pytest.raises(ImageTooLargeError, match="11 bytes, limit 10"):
            storage.get_bytes("b", "k", s3=s3, max_bytes=10)
    assert Body.read_calls == 0


def test_get_bytes_within_limit(s3) -> None:
    body = StreamingBody(_io.BytesIO(b"abc"), 3)
    with Stubber(s3) as stub:
        stub.add_response("get_object", {"Body": body, "ContentLength": 3},
                          {"Bucket": "b", "Key": "k"})
        assert storage.get_bytes("b", "k", s3=s3, max_bytes=10) == b"abc"


def test_npz_bytes_are_deterministic_and_readable() -> None:
    import numpy as np

    arrays = {"image_ids": np.array(["a", "bb"]), "inputs": np.arange(24, dtype=np.uint8)}
    data = storage.npz_bytes(arrays)
    assert data == storage.npz_bytes(dict(arrays))  # np.savez would stamp the current time
    with np.load(_io.BytesIO(data), allow_pickle=False) as z:
        assert list(z["image_ids"]) == ["a", "bb"] and z["inputs"].tolist() == list(range(24))


def test_throttled_put_is_transient(s3) -> None:
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", "SlowDown", http_status_code=503)
        with pytest.raises(TransientAwsError, match="put s3://b/k"):
            storage.put_bytes("b", "k", b"x", s3=s3)


def test_dynamodb_throttling_is_transient() -> None:
    err = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "m"},
                       "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutItem")
    assert isinstance(storage.map_error(err, what="dynamodb put_item t"), TransientAwsError)


def test_model_download_is_few_large_ranged_gets(monkeypatch, tmp_path):
    """A cold Infer container fetches the model in parts of MODEL_PART_BYTES (one GET each),
    not boto3's default 8 MiB: the GET count is ceil(size / part), and the bytes arrive whole."""
    moto = pytest.importorskip("moto")
    part = 5 * 1024 * 1024  # boto3's smallest part; 12 MiB is 3 parts here, 2 at the default
    monkeypatch.setattr(storage, "MODEL_PART_BYTES", part)
    body = bytes(range(256)) * (12 * 1024 * 1024 // 256)
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="m.tflite", Body=body)
        gets = []
        client.meta.events.register("before-call.s3.GetObject", lambda **kw: gets.append(1))
        storage.download_file("models", "m.tflite", str(tmp_path / "m"), s3=client)
    assert (tmp_path / "m").read_bytes() == body
    assert len(gets) == -(-len(body) // part) == 3
