"""Helpers for running the stages against moto (or any S3/DynamoDB endpoint) in tests.

Call inside ``moto.mock_aws()``: :func:`create_resources` makes the artifacts bucket, the
input bucket(s) and the results table exactly as ``template.yaml`` declares them (key
schema, billing); :func:`stage_environment` is the ``Globals`` environment for them.
"""

from __future__ import annotations

from yolo_sfn import env

REGION = "us-east-1"
ARTIFACTS = "yolo-sfn-artifacts"
INPUT = "yolo-sfn-input"
TABLE = "yolo-sfn-results"


def create_resources(s3, ddb, *, artifacts: str = ARTIFACTS, inputs: tuple[str, ...] = (INPUT,),
                     table: str = TABLE) -> None:
    for bucket in (artifacts, *inputs):
        s3.create_bucket(Bucket=bucket)
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "batch_id", "AttributeType": "S"},
                              {"AttributeName": "image_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"},
                   {"AttributeName": "image_id", "KeyType": "RANGE"}])


def stage_environment(*, model_uri: str = "", artifacts: str = ARTIFACTS,
                      inputs: tuple[str, ...] = (INPUT,), table: str = TABLE,
                      model_cache_dir: str = "/tmp/yolo-sfn-models") -> dict[str, str]:
    """The environment ``template.yaml`` gives every function (defaults of its parameters)."""
    return {
        env.BUCKET: artifacts, env.TABLE: table, env.MODEL_URI: model_uri,
        env.SCORE_THRESHOLD: "0.25", env.IOU_THRESHOLD: "0.45", env.RESIZE_MODE: "stretch",
        env.NMS_KIND: "", env.INPUT_BUCKETS: ",".join(inputs),
        env.MAX_IMAGE_BYTES: "52428800", env.MAX_IMAGE_PIXELS: "40000000",
        env.INFER_THREADS: "", env.MODEL_CACHE_DIR: model_cache_dir,
        env.INTERMEDIATE_PREFIX: "tmp/", env.RESULTS_PREFIX: "results/",
    }
