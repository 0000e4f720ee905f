"""Infer, one invoke per batch: ``inputs.npz`` -> TFLite (LiteRT) per image -> one
``heads.npz``. The model version Plan pinned is downloaded into MODEL_CACHE_DIR and loaded
once per container. Event and result: :class:`Batch`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import log_failed_images, logged_failure
from yolo_sfn.workflow.messages import Batch

logger = Logger(service="yolo-sfn-infer")


def handler(event, context=None):
    batch = Batch.from_event(event)
    keys = {"batch_id": batch.batch_id, "child_id": batch.child_id, "size": len(batch.items)}
    with logged_failure(logger, "infer", **keys):
        out = stages.infer(batch, StageConfig.from_env(), s3=aws.client("s3"))
    log_failed_images(logger, "infer", out)
    logger.info("inferred", extra={**keys, "pending": len(out.pending),
                                   "stage_ms": out.stage_ms.get("infer")})
    return out.to_dict()
