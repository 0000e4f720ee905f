"""Plan: validate the execution input, expand prefix/manifest, de-duplicate, take the batch
id (refused while another running execution holds it), write the items manifest for the
Distributed Map. Event: ``{"input", "execution_name", "execution_arn"}``
or a bare execution input; returns :class:`PlanResult`."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_keys, logged_failure
from yolo_sfn.workflow.messages import PlanEvent

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME (template.yaml Globals)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    log_keys(logger, context)  # the batch id is known once the input is planned
    with logged_failure(logger, "plan"):
        out = stages.plan(PlanEvent.from_event(event), StageConfig.from_env(), s3=aws.client("s3"),
                          ddb=aws.client("dynamodb"), sfn=aws.client("stepfunctions"))
    logger.info("planned", extra={"batch_id": out.batch_id, "count": out.count,
                                  "duplicates": out.duplicates})
    return out.to_dict()
