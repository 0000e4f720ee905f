"""Summarize: items manifest + results table -> ``results/<batch>/summary.json``.
Event: :class:`SummarizeEvent`; returns :class:`SummarizeResult` (counts, capped failures)."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import SummarizeEvent

logger = Logger(service="yolo-sfn-summarize")


def handler(event, context=None):
    msg = SummarizeEvent.from_event(event)
    with logged_failure(logger, "summarize", batch_id=msg.batch_id):
        out = stages.summarize(msg, StageConfig.from_env(), s3=aws.client("s3"),
                               ddb=aws.client("dynamodb"))
    logger.info("summarized", extra={"batch_id": out.batch_id, "succeeded": out.succeeded,
                                     "failed": out.failed, "summary_uri": out.summary_uri})
    return out.to_dict()
