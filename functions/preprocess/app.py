"""Preprocess, one invoke per batch: each image GET -> decode -> resize; one
``tmp/<batch>/<child>/inputs.npz`` for the batch. Event: the ItemBatcher envelope
``{"BatchInput", "Items"}`` (:class:`Batch`); returns :class:`Batch`. A per-image error stays
on its item."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_failed_images, logged_failure
from yolo_sfn.workflow.messages import Batch

logger = Logger(service="yolo-sfn-preprocess")


def handler(event, context=None):
    batch = Batch.from_event(event)
    keys = {"batch_id": batch.batch_id, "child_id": batch.child_id, "size": len(batch.items)}
    with logged_failure(logger, "preprocess", **keys):
        out = stages.preprocess(batch, StageConfig.from_env(), s3=aws.client("s3"))
    log_failed_images(logger, "preprocess", out)
    logger.info("preprocessed", extra={**keys, "pending": len(out.pending),
                                   "stage_ms": out.stage_ms.get("preprocess")})
    return out.to_dict()
