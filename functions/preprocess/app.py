"""Preprocess: S3 image -> decode -> resize -> uint8 NHWC ``input.npy`` in S3.
Event: :class:`ImageTask` (the Map ItemSelector); returns :class:`Preprocessed`."""

from aws_lambda_powertools import Logger

from yolo_sfn.workflow import aws, stages
from yolo_sfn.workflow.config import StageConfig
from yolo_sfn.workflow.handlers import logged_failure
from yolo_sfn.workflow.messages import ImageTask

logger = Logger(service="yolo-sfn-preprocess")


def handler(event, context=None):
    task = ImageTask.from_event(event)
    keys = {"batch_id": task.batch_id, "image_id": task.image_id, "uri": task.uri}
    with logged_failure(logger, "preprocess", **keys):
        out = stages.preprocess(task, StageConfig.from_env(), s3=aws.client("s3"))
    logger.info("preprocessed", extra={**keys, "width": out.width, "height": out.height,
                                       "timings_ms": out.timings_ms})
    return out.to_dict()
