"""Postprocess, one invoke per batch: ``heads.npz`` + model metadata + each image's
transform -> decode + NMS -> one ``detections.json``. Event and result: :class:`Batch`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_failed_images, logged_failure
from yolo_sfn.workflow.messages import Batch

logger = Logger(service="yolo-sfn-postprocess")


def handler(event, context=None):
    batch = Batch.from_event(event)
    keys = {"batch_id": batch.batch_id, "child_id": batch.child_id, "size": len(batch.items)}
    with logged_failure(logger, "postprocess", **keys):
        out = stages.postprocess(batch, StageConfig.from_env(), s3=aws.client("s3"))
    log_failed_images(logger, "postprocess", out)
    logger.info("postprocessed", extra={**keys, "pending": len(out.pending),
                                   "stage_ms": out.stage_ms.get("postprocess")})
    return out.to_dict()
