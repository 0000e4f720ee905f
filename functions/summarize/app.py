"""Summarize: items manifest + results table -> ``results/<batch>/summary.json``; frees the
batch id (drops the lock Plan took).
Event: :class:`SummarizeEvent`; returns :class:`SummarizeResult` (counts, capped failures)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_keys, logged_failure
from yolo_sfn.workflow.messages import SummarizeEvent

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME (template.yaml Globals)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    msg = SummarizeEvent.from_event(event)
    log_keys(logger, context, batch_id=msg.batch_id)
    with logged_failure(logger, "summarize"):
        out = stages.summarize(msg, StageConfig.from_env(), s3=aws.client("s3"),
                               ddb=aws.client("dynamodb"))
    logger.info("summarized", extra={"succeeded": out.succeeded, "failed": out.failed,
                                     "summary_uri": out.summary_uri})
    return out.to_dict()
