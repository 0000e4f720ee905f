"""The local engine's fast S3 path for the stages (``yolo_sfn.local.directs3``) behaves like
the botocore client on moto: same objects, same error codes/statuses, same mapped errors."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("moto")

from botocore.exceptions import ClientError

from yolo_sfn.errors import ObjectNotFoundError
from yolo_sfn.local import compat
from yolo_sfn.local.directs3 import DirectS3
from yolo_sfn.local.engine import S3_BUFFER_ENV
from yolo_sfn.workflow import io

BUCKET = "direct-s3-test"


@pytest.fixture
def clients(monkeypatch):
    import boto3
    from moto import mock_aws

    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        real = boto3.client("s3", region_name="us-east-1")
        real.create_bucket(Bucket=BUCKET)
        yield real, DirectS3(boto3.client("s3", region_name="us-east-1"))


def _error(fn, **kw):
    with pytest.raises(ClientError) as info:
        fn(**kw)
    r = info.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def test_objects_round_trip_between_the_two_clients(clients):
    real, direct = clients
    direct.put_object(Bucket=BUCKET, Key="a.json", Body=b'{"x": 1}',
                      ContentType="application/json")
    got = real.get_object(Bucket=BUCKET, Key="a.json")
    assert got["Body"].read() == b'{"x": 1}'
    assert got["ContentType"] == "application/json"
    real.put_object(Bucket=BUCKET, Key="b.bin", Body=b"\x00" * 100_000)
    assert direct.head_object(Bucket=BUCKET, Key="b.bin")["ContentLength"] == 100_000
    assert direct.get_object(Bucket=BUCKET, Key="b.bin")["Body"].read(10) == b"\x00" * 10
    assert (direct.head_object(Bucket=BUCKET, Key="b.bin")["ETag"]
            == real.head_object(Bucket=BUCKET, Key="b.bin")["ETag"])
    # everything else is the real client
    keys = [o["Key"] for o in direct.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["a.json", "b.bin"]


@pytest.mark.parametrize("op", ["get_object", "head_object"])
@pytest.mark.parametrize("bucket", [BUCKET, "no-such-bucket-here"])
def test_errors_match_botocore(clients, op, bucket):
    real, direct = clients
    assert (_error(getattr(direct, op), Bucket=bucket, Key="missing")
            == _error(getattr(real, op), Bucket=bucket, Key="missing"))


def test_put_into_missing_bucket_matches_botocore(clients):
    real, direct = clients
    kw = {"Bucket": "no-such-bucket-here", "Key": "k", "Body": b"x"}
    assert _error(direct.put_object, **kw) == _error(real.put_object, **kw)


def test_io_maps_direct_errors_like_before(clients):
    _, direct = clients
    with pytest.raises(ObjectNotFoundError):
        io.get_bytes(BUCKET, "missing", s3=direct)
    with pytest.raises(ObjectNotFoundError):
        io.get_bytes(BUCKET, "missing", s3=direct, max_bytes=10)


def test_engine_spills_s3_bodies_and_installs_direct_client(monkeypatch):
    pytest.importorskip("samtranslator")
    from yolo_sfn.local.engine import LocalEngine
    from yolo_sfn.local.testing import write_toy_project
    from yolo_sfn.workflow import aws

    monkeypatch.delenv(S3_BUFFER_ENV, raising=False)
    import tempfile

    with tempfile.TemporaryDirectory() as d, LocalEngine(write_toy_project(d)):
        from moto.settings import get_s3_default_key_buffer_size

        assert get_s3_default_key_buffer_size() == 64 * 1024
        assert isinstance(aws.client("s3"), DirectS3)
    assert S3_BUFFER_ENV not in os.environ
    assert not isinstance(aws._clients.get("s3"), DirectS3)


def test_pin_check_covers_the_s3_backend(monkeypatch):
    import moto.s3.models as s3_models

    monkeypatch.delattr(s3_models.S3Backend, "head_object")
    with pytest.raises(compat.LocalEngineError, match=r"S3Backend\.head_object"):
        compat.check_moto()


def test_etag_is_computed_only_when_asked_and_matches_botocore(clients):
    real, direct = clients
    put = direct.put_object(Bucket=BUCKET, Key="c.bin", Body=b"\x01" * 50_000)
    obj = direct._backend.get_object(BUCKET, "c.bin")
    assert obj._etag is None  # not computed by the put
    got = direct.get_object(Bucket=BUCKET, Key="c.bin")
    assert obj._etag is None and got["Body"].read() == b"\x01" * 50_000  # nor by the get
    want = real.head_object(Bucket=BUCKET, Key="c.bin")["ETag"]
    assert "ETag" in put and put["ETag"] == want and put.get("ETag") == want
    assert got.get("ETag") == want and got["ContentLength"] == 50_000
    assert put.get("Missing", 7) == 7 and "Missing" not in put
    with pytest.raises(KeyError):
        put["Missing"]
