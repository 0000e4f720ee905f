"""yolo-sfn: serverless batch object detection with darknet YOLO models on TFLite."""

__version__ = "0.1.0"
