"""Postprocess, one invoke per batch: ``heads.npz`` + model metadata + each image's
transform -> decode + NMS -> one ``detections.json``. Event and result: :class:`Batch`."""

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
    with logged_failure(logger, "postprocess"):
        out = stages.postprocess(batch, StageConfig.from_env(), s3=aws.client("s3"))
    log_failed_images(logger, "postprocess", out)
    logger.info("postprocessed", extra={"pending": len(out.pending),
                                        "stage_ms": out.stage_ms.get("postprocess")})
    return out.to_dict()
