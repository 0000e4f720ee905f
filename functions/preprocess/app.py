"""Preprocess, one invoke per batch: each image GET -> decode -> resize; one
``tmp/<batch>/<child>/inputs.npz`` for the batch. Event: the ItemBatcher envelope
``{"BatchInput", "Items"}`` (:class:`Batch`); returns :class:`Batch`. A per-image error stays
on its item."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_failed_images, log_keys, logged_failure
from yolo_sfn.workflow.messages import Batch

logger = Logger()  # service: POWERTOOLS_SERVICE_NAME (template.yaml Globals)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    batch = Batch.from_event(event)
    log_keys(logger, context, batch)
    with logged_failure(logger, "preprocess"):
        out = stages.preprocess(batch, StageConfig.from_env(), s3=aws.client("s3"))
    log_failed_images(logger, "preprocess", out)
    logger.info("preprocessed", extra={"pending": len(out.pending),
                                       "stage_ms": out.stage_ms.get("preprocess")})
    return out.to_dict()
