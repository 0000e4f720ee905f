"""Store and RecordFailure: write ``results/<batch>/<image>.json`` + one DynamoDB item.
Event: :class:`Postprocessed` (success) or :class:`FailureEvent` (any stage's input +
``stage`` + the Catch's ``error``); returns :class:`StoreResult`. Both overwrite (idempotent)."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import FailureEvent, Postprocessed, is_failure_event

logger = Logger(service="yolo-sfn-store")


def handler(event, context=None):
    cfg, s3, ddb = StageConfig.from_env(), aws.client("s3"), aws.client("dynamodb")
    with logged_failure(logger, "store"):
        if is_failure_event(event):
            out = stages.record_failure(FailureEvent.from_event(event), cfg, s3=s3, ddb=ddb)
        else:
            out = stages.store(Postprocessed.from_event(event), cfg, s3=s3, ddb=ddb)
    logger.info("stored", extra={"batch_id": out.batch_id, "image_id": out.image_id,
                                 "status": out.status, "error": out.error})
    return out.to_dict()
