"""One warm Lambda container, as a process: run by ``yolo_sfn.local.workers`` under the
Lambda runtime's Python (3.12) with ``-I -S``, so it may import only the standard library
before its ``sys.path`` is set (this file imports nothing from ``yolo_sfn``).

    python3.12 -I -S lambda_worker.py CODE_DIR HANDLER PATH...

``CODE_DIR`` is the built function (``.aws-sam/build/<LogicalId>``), ``HANDLER`` its
``module.function``, each ``PATH`` goes on ``sys.path`` after it (the merged layers'
``python/``, then the runtime's boto3). The function's environment comes from the parent.

Protocol, one JSON object per line: stdin ``{"event", "context": {"function_name",
"memory_limit_in_mb", "invoked_function_arn", "timeout_s"}}``; the original stdout
``{"ok": result}`` or ``{"error": {"errorType", "errorMessage"}}``. The first line written is
``{"ready": true}`` or the import error. ``{"describe": true}`` on stdin answers ``{"ok":
{"python", "modules"}}``: the interpreter's version and where each top-level module loaded
so far came from. The handler's own stdout (Powertools logs) goes to stderr.
"""

import json
import os
import sys
import time
import traceback
import uuid


class Context:
    """The Lambda context attributes the handlers and Powertools read (``invoke.LambdaContext``
    in a process that cannot import ``yolo_sfn.local``: the layers do not ship it)."""

    def __init__(self, spec: dict) -> None:
        self.function_name = spec["function_name"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(spec["memory_limit_in_mb"])
        self.invoked_function_arn = spec["invoked_function_arn"]
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local-worker"
        self._deadline = time.monotonic() + float(spec["timeout_s"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error(err: BaseException, error_type: str | None = None) -> dict:
    return {"error": {"errorType": error_type or type(err).__name__, "errorMessage": str(err),
                      "stackTrace": traceback.format_exception(err)[-6:]}}


def describe() -> dict:
    modules = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
               if "." not in name}
    return {"python": sys.version.split()[0],
            "modules": {k: v for k, v in sorted(modules.items()) if v}}


def main() -> None:
    code_dir, handler_name, *paths = sys.argv[1:]
    sys.path[:0] = [code_dir, *paths]
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the handler's prints and stdout loggers go to stderr
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    module_name, _, attr = handler_name.rpartition(".")
    try:
        handler = getattr(__import__(module_name), attr)
    except Exception as e:  # Lambda: Runtime.ImportModuleError, every invoke fails
        send(error(e, "Runtime.ImportModuleError"))
        return
    send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("describe"):
            send({"ok": describe()})
            continue
        try:
            result = handler(request["event"], Context(request["context"]))
        except Exception as e:  # every handler error becomes a Lambda error payload
            send(error(e))
            continue
        try:
            send({"ok": result})
        except TypeError as e:
            send(error(e, "Runtime.MarshalError"))


if __name__ == "__main__":
    main()
