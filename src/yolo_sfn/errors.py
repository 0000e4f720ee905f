"""Every error a user can see, by name.

The class name is the error type that crosses the Step Functions boundary
(``errorType`` in a Lambda error payload), so ASL ``Retry``/``Catch`` blocks match on it.
``retryable`` says whether the workflow should retry the stage or record a failure.
"""

from __future__ import annotations


class YoloSfnError(Exception):
    """Base class. ``str(err)`` is one line naming the input and the problem."""

    retryable = False


# --- user input: files, cfg, weights -------------------------------------------------
class InputFileError(YoloSfnError):
    """A local file is missing, unreadable or empty."""


class CfgError(YoloSfnError):
    """A darknet .cfg has an unknown section/option or an invalid value."""


class WeightsError(YoloSfnError):
    """A darknet .weights file does not match its cfg (too short, too long, bad header)."""


class ConversionError(YoloSfnError):
    """TFLite conversion failed (for example TensorFlow missing, or calibration images bad)."""


# --- images ----------------------------------------------------------------------------
class ImageDecodeError(YoloSfnError):
    """Bytes are empty, truncated, or not an image format we decode."""


class ImageTooLargeError(YoloSfnError):
    """Declared pixel count exceeds the limit (decompression-bomb guard), or object too big."""


# --- model -----------------------------------------------------------------------------
class ModelError(YoloSfnError):
    """Model file missing/corrupt, or its metadata does not match its tensors."""


# --- workflow ----------------------------------------------------------------------------
class InputValidationError(YoloSfnError):
    """Execution input or a stage event is malformed (missing field, wrong type, ...)."""


class S3UriError(InputValidationError):
    """An S3 URI is malformed or points outside the allowed input buckets/prefixes."""


class ObjectNotFoundError(YoloSfnError):
    """The S3 object does not exist (permanent)."""


class AccessDeniedError(YoloSfnError):
    """The stack may not read that object (permanent)."""


class TransientAwsError(YoloSfnError):
    """An S3 or DynamoDB hiccup (throttling, 5xx, connection reset, items left unprocessed):
    the stage retries (the ASL's Retry lists this name)."""

    retryable = True


class BatchInUseError(YoloSfnError):
    """Another execution running now holds the batch id (Plan refuses a second one: they would
    share the batch's manifest, intermediates, results and table items)."""


class LocalEngineError(YoloSfnError):
    """The local engine cannot run (moto missing/moved, template unreadable, deploy failed)."""


def error_payload(err: BaseException) -> dict:
    """Lambda-style error payload: ``{"errorType", "errorMessage"}``."""
    return {"errorType": type(err).__name__, "errorMessage": str(err)}
