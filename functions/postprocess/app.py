"""Postprocess: ``heads.npz`` + model metadata + transform -> decode + NMS ->
``detections.json``. Event: :class:`Inferred`; returns :class:`Postprocessed`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import Inferred

logger = Logger(service="yolo-sfn-postprocess")


def handler(event, context=None):
    msg = Inferred.from_event(event)
    keys = {"batch_id": msg.batch_id, "image_id": msg.image_id}
    with logged_failure(logger, "postprocess", **keys):
        out = stages.postprocess(msg, StageConfig.from_env(), s3=aws.client("s3"))
    logger.info("postprocessed", extra={**keys, "num_detections": out.num_detections,
                                        "timings_ms": out.timings_ms})
    return out.to_dict()
