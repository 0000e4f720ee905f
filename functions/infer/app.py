"""Infer: ``input.npy`` -> TFLite (LiteRT) -> ``heads.npz``. The model is downloaded from
MODEL_URI into MODEL_CACHE_DIR and loaded once per container (reused while warm).
Event: :class:`Preprocessed`; returns :class:`Inferred`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import Preprocessed

logger = Logger(service="yolo-sfn-infer")


def handler(event, context=None):
    msg = Preprocessed.from_event(event)
    keys = {"batch_id": msg.batch_id, "image_id": msg.image_id}
    with logged_failure(logger, "infer", **keys):
        out = stages.infer(msg, StageConfig.from_env(), s3=aws.client("s3"))
    logger.info("inferred", extra={**keys, "model": out.model, "timings_ms": out.timings_ms})
    return out.to_dict()
