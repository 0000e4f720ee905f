"""Model metadata shared by the converter (writer) and the detection core (reader)."""

from yolo_sfn.model.meta import HeadMeta, ModelMeta, meta_path_for

__all__ = ["HeadMeta", "ModelMeta", "meta_path_for"]
