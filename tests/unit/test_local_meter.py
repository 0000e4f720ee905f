"""DynamoDB write units and request kinds counted by ``yolo_sfn.local.meter`` (no moto)."""

from __future__ import annotations

import json

from yolo_sfn.local import meter


def test_item_size_follows_the_developer_guide():
    # names + values: "id"(2) + "abc"(3); "n"(1) + 123 (3 digits -> 2 + 1); "ok"(2) + 1
    item = {"id": {"S": "abc"}, "n": {"N": "123"}, "ok": {"BOOL": True}}
    assert meter.item_size(item) == 5 + 4 + 3
    # a map: 3 overhead + per element 1 + name + value
    assert meter.attribute_value_size({"M": {"a": {"S": "xy"}}}) == 3 + 1 + 1 + 2
    assert meter.attribute_value_size({"L": [{"S": "x"}, {"NULL": True}]}) == 3 + 2 + 2


def test_write_units_one_per_started_kb():
    assert meter.write_units(0) == 1
    assert meter.write_units(1024) == 1
    assert meter.write_units(1025) == 2
    big = {"k": {"S": "x" * 3000}}
    assert meter.dynamodb_write_units("PutItem", {"Item": big}) == 3
    batch = {"RequestItems": {"t": [{"PutRequest": {"Item": big}},
                                    {"PutRequest": {"Item": {"k": {"S": "y"}}}}]}}
    assert meter.dynamodb_write_units("BatchWriteItem", batch) == 4


class _Req:
    def __init__(self, body=b"", runner=False):
        self.body = body
        self.headers = {meter.UNCOUNTED_HEADER: "1"} if runner else {}


def test_meter_counts_kinds_and_skips_the_runners_requests():
    m = meter.Meter()
    m.observe("before-send.s3.GetObject", _Req())
    m.observe("before-send.s3.HeadObject", _Req())
    m.observe("before-send.s3.ListObjectsV2", _Req())
    m.observe("before-send.s3.PutObject", _Req())
    m.observe("before-send.s3.PutObject", _Req(runner=True))
    m.observe("before-send.dynamodb.PutItem",
              _Req(json.dumps({"Item": {"k": {"S": "v"}}}).encode()))
    snap = m.snapshot()
    assert {k: snap[k] for k in ("s3_get", "s3_head", "s3_list", "s3_put",
                                 "dynamodb_write_units")} == {
        "s3_get": 1, "s3_head": 1, "s3_list": 1, "s3_put": 1, "dynamodb_write_units": 1}
    assert snap["requests"]["s3.PutObject"] == 1
    assert meter.difference(snap, {"s3_get": 1, "requests": {"s3.GetObject": 1}})["s3_get"] == 0
