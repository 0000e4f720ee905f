"""The project's vocabulary: every name that more than one layer spells, said once.

Stage names, resize modes, NMS kinds, image extensions and the S3 key layout of the
artifacts bucket. Plain constants and one pure function; imports nothing of ours, so
``core/`` (the bottom) and every layer above it import it. URI *validation* is
:mod:`yolo_sfn.workflow.s3uri`; ``template.yaml`` owns the deployed values (environment
``Globals``), :mod:`yolo_sfn.workflow.config` reads them with these as defaults.
"""

from __future__ import annotations

# --- stages --------------------------------------------------------------------------------
# The state machine's six Lambda stages, in order (functions/<stage>/app.py, <Stage>Function).
WORKFLOW_STAGES = ("plan", "preprocess", "infer", "postprocess", "store", "summarize")
# The stages a batch of images passes through (a child execution), in order.
IMAGE_STAGES = ("preprocess", "infer", "postprocess", "store")
# An image failure names one of the image stages, or this when the stage is not known.
UNKNOWN_STAGE = "unknown"

# --- detection options ---------------------------------------------------------------------
RESIZE_MODES = ("stretch", "letterbox")
# "resize from the model": letterbox for a model whose darknet cfg says letter_box=1
# (sidecar ``letter_box: true``), stretch otherwise. See :func:`resolve_resize`.
RESIZE_FROM_MODEL = "model"
RESIZE_CHOICES = (RESIZE_FROM_MODEL, *RESIZE_MODES)  # what a user may ask for
NMS_KINDS = ("greedy", "diou")

# --- which files are images ----------------------------------------------------------------
# Suffixes OpenCV decodes (lower case). A prefix listing submits only these.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pbm",
                    ".pgm", ".ppm", ".gif")
# Images by name that OpenCV does not decode: submitted anyway, they fail with a clear reason.
UNDECODED_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif")
# Camera raw files (OpenCV decodes at most a small preview): refused with a clear reason.
RAW_EXTENSIONS = (".dng", ".nef", ".nrw", ".cr2", ".cr3", ".crw", ".arw", ".srf", ".sr2",
                  ".orf", ".rw2", ".raf", ".pef", ".srw", ".3fr", ".erf", ".kdc", ".mrw",
                  ".x3f", ".raw", ".rwl", ".iiq")

# --- S3 key layout of the artifacts bucket -------------------------------------------------
#   <intermediate>/<batch_id>/<child_id>/{inputs.npz,heads.npz,detections.json}  (expires)
#   <results>/<batch_id>/<image_id>.json, <results>/<batch_id>/summary.json
#   batches/<batch_id>/..., manifests/...
# The first two prefixes are configuration (INTERMEDIATE_PREFIX / RESULTS_PREFIX in
# template.yaml Globals); these are their defaults.
INTERMEDIATE_PREFIX = "tmp/"
RESULTS_PREFIX = "results/"
BATCHES_PREFIX = "batches/"
MANIFESTS_PREFIX = "manifests/"  # where `yolo-sfn submit` writes a manifest
SUMMARY_NAME = "summary.json"
# The per-batch intermediate each image stage writes (store writes results instead).
INTERMEDIATES = {"preprocess": "inputs.npz", "infer": "heads.npz",
                 "postprocess": "detections.json"}


def as_prefix(value: str) -> str:
    """A configured prefix as keys use it: ``"/tmp"`` -> ``"tmp/"``, ``""`` -> ``""``."""
    value = value.strip("/")
    return value + "/" if value else ""


def intermediate_key(prefix: str, batch_id: str, child_id: str, name: str) -> str:
    """A per-batch intermediate: deterministic, so a rerun child overwrites its own files."""
    return f"{prefix}{batch_id}/{child_id}/{name}"


def result_key_in(prefix: str, batch_id: str, image_id: str) -> str:
    return f"{prefix}{batch_id}/{image_id}.json"


def summary_key_in(prefix: str, batch_id: str) -> str:
    return f"{prefix}{batch_id}/{SUMMARY_NAME}"


def resolve_resize(resize: str | None, letter_box: bool) -> str:
    """The resize mode to use: ``resize`` when it names one, else the model's
    (``None`` or ``"model"`` -> ``"letterbox"`` if ``letter_box`` else ``"stretch"``)."""
    if resize in (None, "", RESIZE_FROM_MODEL):
        return "letterbox" if letter_box else "stretch"
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize mode {resize!r} not in {RESIZE_CHOICES}")
    return resize
