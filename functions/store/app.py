"""Store and RecordBatchFailure, one invoke per batch: ``results/<batch>/<image>.json`` per
image + one DynamoDB item per image (BatchWriteItem). Event: :class:`Batch` (Store) or
:class:`BatchFailure` (a stage's input + ``stage`` + the Catch's ``error``); returns
:class:`ChildResult`. Both overwrite (idempotent)."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import Batch, BatchFailure, is_failure_event

logger = Logger(service="yolo-sfn-store")


def handler(event, context=None):
    cfg, s3, ddb = StageConfig.from_env(), aws.client("s3"), aws.client("dynamodb")
    with logged_failure(logger, "store"):
        if is_failure_event(event):
            out = stages.record_batch_failure(BatchFailure.from_event(event), cfg, s3=s3, ddb=ddb)
        else:
            out = stages.store(Batch.from_event(event), cfg, s3=s3, ddb=ddb)
    logger.info("stored", extra=out.to_dict())
    return out.to_dict()
