"""Store and RecordBatchFailure, one invoke per batch: ``results/<batch>/<image>.json`` per
image + one DynamoDB item per image (BatchWriteItem). Event: :class:`Batch` (Store) or
:class:`BatchFailure` (a stage's input + ``stage`` + the Catch's ``error``); returns
:class:`ChildResult`. Both overwrite (idempotent)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_keys, logged_failure
from yolo_sfn.workflow.messages import Batch, BatchFailure, is_failure_event

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME (template.yaml Globals)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    cfg, s3, ddb = StageConfig.from_env(), aws.client("s3"), aws.client("dynamodb")
    failure = BatchFailure.from_event(event) if is_failure_event(event) else None
    batch = failure.batch if failure else Batch.from_event(event)
    log_keys(logger, context, batch)
    with logged_failure(logger, "store"):
        if failure:
            out = stages.record_batch_failure(failure, cfg, s3=s3, ddb=ddb)
        else:
            out = stages.store(batch, cfg, s3=s3, ddb=ddb)
    logger.info("stored", extra={"succeeded": out.succeeded, "failed": out.failed})
    return out.to_dict()
