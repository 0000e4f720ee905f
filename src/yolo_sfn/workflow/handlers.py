"""What the Lambda handlers share (log keys and failure logging), and importing them
(``functions/<stage>/app.py:handler``) in-process.

Every function folder holds a module called ``app``, so they are imported by path under
distinct names (``yolo_sfn_functions.<stage>``). Used by the tests and the local runner.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from yolo_sfn.contract import WORKFLOW_STAGES
from yolo_sfn.errors import YoloSfnError

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"
LOGICAL_IDS = {s: s.capitalize() + "Function" for s in WORKFLOW_STAGES}  # PlanFunction, ...


def load_handler(stage: str, functions_dir: str | Path | None = None) -> Callable:
    """``load_handler("store")`` -> ``functions/store/app.py:handler`` (imported once)."""
    if stage not in WORKFLOW_STAGES:
        raise ValueError(f"stage {stage!r} not in {WORKFLOW_STAGES}")
    name = f"yolo_sfn_functions.{stage}"
    module = sys.modules.get(name)
    if module is None:
        module = import_path(name, Path(functions_dir or FUNCTIONS_DIR) / stage / "app.py")
    return module.handler


def import_path(name: str, path: Path) -> ModuleType:
    """Import the file ``path`` as module ``name`` (registered in ``sys.modules``, so a
    second import of the same name is the same module; removed again if it fails)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def log_keys(logger, context, batch=None, **keys) -> None:
    """This invocation's keys on each of its log lines, replacing the previous invocation's:
    the context's (function_name, function_request_id, ...), the ``batch``'s (batch_id,
    child_id, size) and ``keys``.

    Powertools' ``append_keys`` in its thread-safe form, over the keys
    ``inject_lambda_context`` appends: the local engine runs handlers in threads of one
    process, where one logger serves all functions, and there the plain form gave 8 of 22 log
    lines of a 5-batch run another function's name. On Lambda both forms log the same."""
    from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

    if batch is not None:
        keys = {"batch_id": batch.batch_id, "child_id": batch.child_id,
                "size": len(batch.items), **keys}
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**vars(build_lambda_context_model(context)), **keys)


@contextmanager
def logged_failure(logger, what: str) -> Iterator[None]:
    """Log a project error as ``"<what> failed"`` with its type and message, then re-raise it
    unchanged (Lambda reports the class name as ``errorType``)."""
    try:
        yield
    except YoloSfnError as e:
        logger.warning(f"{what} failed", extra={"error_type": type(e).__name__, "error": str(e)})
        raise


def log_failed_images(logger, stage: str, batch) -> None:
    """One warning per image that ``stage`` failed (its error stays on the item; the batch
    goes on), with the image's id, URI, error type and message."""
    for item in batch.items:
        if item.error and item.error.get("stage") == stage:
            logger.warning(f"{stage} failed for one image", extra={
                "image_id": item.image_id, "uri": item.uri,
                "error_type": item.error["type"], "error": item.error["message"]})
