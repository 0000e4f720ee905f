"""The CLI against a deployed stack (``submit``, ``status``, ``results``, ``describe``,
``list``): see ``yolo_sfn.remote.api``. boto3's normal credential/region/endpoint chain."""
