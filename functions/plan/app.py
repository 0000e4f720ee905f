"""Plan: validate the execution input, expand prefix/manifest, de-duplicate, write the
items manifest for the Distributed Map. Event: ``{"input", "execution_name", "execution_arn"}``
or a bare execution input; returns :class:`PlanResult`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import PlanEvent

logger = Logger(service="yolo-sfn-plan")


def handler(event, context=None):
    with logged_failure(logger, "plan"):
        out = stages.plan(PlanEvent.from_event(event), StageConfig.from_env(), s3=aws.client("s3"))
    logger.info("planned", extra={"batch_id": out.batch_id, "count": out.count,
                                  "duplicates": out.duplicates})
    return out.to_dict()
