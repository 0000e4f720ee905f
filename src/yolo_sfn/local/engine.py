"""The embedded local engine: template.yaml + the ASL on moto's Step Functions interpreter.

```python
with LocalEngine() as engine:                 # moto in-process, hooks installed
    engine.deploy(model_path)                 # template.yaml -> moto CloudFormation
    uris, missing = engine.upload_inputs([...])
    run = engine.execute({"images": uris})    # start + wait; run.summary, run.attempts
```
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_sfn.local import aslext, features, motohooks, taskclock
from yolo_sfn.local.deploy import Stack, create_stack, package, translate
from yolo_sfn.local.invoke import Attempt, Fault, LambdaRouter, set_environ
from yolo_sfn.local.meter import Meter, difference, tag_client
from yolo_sfn.local.spool import path_spooled_s3
from yolo_sfn.local.template import Template, find_project_root, read_template
from yolo_sfn.workflow.s3uri import split_s3_uri

INPUT_BUCKET = "yolo-sfn-input"
MODEL_BUCKET = "yolo-sfn-local-models"
STACK_NAME = "yolo-sfn-local"
REGION = "us-east-1"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass
class Progress:
    """``total``: items of the execution's Map run(s), known once the Map has read them (None
    before); ``done``: items whose child execution ended; ``failed``: images recorded failed."""

    status: str
    total: int | None
    done: int
    failed: int
    elapsed_s: float


@dataclass
class LocalRun:
    """Outcome of one execution on the local engine."""

    execution_arn: str
    status: str
    output: dict | None
    error: str | None
    cause: str | None
    summary: dict | None
    attempts: list[Attempt]
    retry_waits: list[float]
    notes: list[str]
    elapsed_s: float
    batch_id: str | None = None
    extra: dict = field(default_factory=dict)
    counts: dict | None = None  # billable operations, counted (see LocalEngine.count)
    cost: dict | None = None  # the cost.json shape (yolo_sfn.bench.cost.aws_cost)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class LocalEngine:
    """moto in-process with our hooks; deploys the template and runs executions.

    ``retry_scale``: fraction of each ASL Retry wait really slept (1.0 = as on AWS, 0 = none;
    waits are recorded either way). ``faults``: see ``yolo_sfn.local.invoke.Fault``.
    ``function_logs``: a text stream for the handlers' stdout loggers (None: leave them).
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        region: str = REGION,
        faults: list[Fault] | tuple = (),
        retry_scale: float = 1.0,
        stack_name: str = STACK_NAME,
        input_bucket: str = INPUT_BUCKET,
        function_logs: Any = None,
    ) -> None:
        self.root = find_project_root(Path(root) if root else None)
        self.template: Template = read_template(self.root / "template.yaml")
        self.region = region
        self.router = LambdaRouter(faults, log_stream=function_logs)
        self.retry_scale = retry_scale
        self.stack_name = stack_name
        self.input_bucket = input_bucket
        self.notes: list[str] = features.scan(self.template.asl)
        self.stack: Stack | None = None
        self._exit: ExitStack | None = None
        self._clients: dict[str, Any] = {}
        self.clock: motohooks.RecordingClock | None = None
        self.meter = Meter()
        self._first_attempt = 0  # the current execution's first entry in router.attempts
        self._totals: dict[str, int] = {}  # execution ARN -> items its Map run read

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> LocalEngine:
        motohooks.check_moto()
        from moto import mock_aws

        stack = ExitStack()
        try:
            stack.enter_context(_environ({
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_ENDPOINT_URL": None,
                "AWS_PROFILE": None, "AWS_DEFAULT_PROFILE": None,
                # botocore's default CRC32 trailer makes moto de-chunk every PUT body in
                # Python (~1.5 s of CPU per 50 MB batch tensor); checksums are not what a
                # local run checks, and the Lambda code is the same either way
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
            }))
            # object bodies over 64 KiB in files opened per access: fds bounded (spool.py)
            stack.enter_context(path_spooled_s3())
            # (not lambda use_docker=False: that swaps in moto's echo backend)
            stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
            stack.enter_context(motohooks.quiet_interpreter_logs())
            stack.enter_context(aslext.installed())
            stack.enter_context(taskclock.installed())
            stack.enter_context(self.meter.installed())
            stack.enter_context(motohooks.cached_jsonpath_parsing())
            self.clock = stack.enter_context(motohooks.retry_clock(self.retry_scale))
            stack.enter_context(self.router.installed())
            stack.callback(_reset_handler_clients)
            _reset_handler_clients()  # clients cached by the stages belong to this moto session
        except BaseException:
            stack.close()
            raise
        self._exit = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._exit is not None:
            self._exit.close()
            self._exit = None

    def client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            import boto3

            client = self._clients[service] = tag_client(  # the engine's own: not billed
                boto3.client(service, region_name=self.region))
        return client

    # --- deploy ------------------------------------------------------------------------
    def upload_model(self, model_path: Path | str) -> str:
        """Upload ``M.tflite`` + ``M.tflite.json``; returns the s3:// URI of the model."""
        model_path = Path(model_path)
        sidecar = model_path.with_name(model_path.name + ".json")
        for path in (model_path, sidecar):
            if not path.is_file():
                from yolo_sfn.errors import InputFileError

                raise InputFileError(f"{path}: model file missing")
        s3 = self.client("s3")
        _make_bucket(s3, MODEL_BUCKET, self.region)
        key = f"models/{model_path.name}"
        self.put_file(model_path, MODEL_BUCKET, key)
        self.put_file(sidecar, MODEL_BUCKET, key + ".json")
        return f"s3://{MODEL_BUCKET}/{key}"

    def put_file(self, path: Path, bucket: str, key: str) -> None:
        """One local file into moto's S3 in one PutObject (the runner's own upload: not
        billed). boto3's ``upload_file`` would start a transfer manager and its threads per
        file and split a model into parts that moto joins again; a single PUT takes up to
        5 GB on S3, far above any image or model here. Raises OSError when unreadable."""
        with Path(path).open("rb") as body:
            self.client("s3").put_object(Bucket=bucket, Key=key, Body=body)

    def deploy(self, model_path: Path | str | None = None, **parameters: Any) -> Stack:
        """Create the stack from template.yaml. ``parameters`` override template defaults."""
        params = {}
        if model_path is not None:
            params["ModelUri"] = self.upload_model(model_path)
        if "InputBucketNames" in self.template.parameters:
            params["InputBucketNames"] = self.input_bucket
        params.update({k: str(v) for k, v in parameters.items() if v is not None})
        _make_bucket(self.client("s3"), self.input_bucket, self.region)
        sam = package(self.template, self.client("s3"))
        cfn = translate(sam, params, self.region, self.template.asl_text)
        self.stack = create_stack(self.client("cloudformation"), self.stack_name, cfn, params,
                                  self.region)
        for lid, rtype in sorted(self.stack.not_created.items()):
            self.notes.append(f"{lid} ({rtype}) is not supported by moto's CloudFormation and "
                              "was not created locally.")
        self._bind_functions()
        return self.stack

    def _bind_functions(self) -> None:
        lam = self.client("lambda")
        envs = {}
        for stage, name in self.stack.functions.items():
            spec = self.template.functions[stage]
            self.router.bind(name, spec)
            cfg = lam.get_function_configuration(FunctionName=name)
            envs[name] = (cfg.get("Environment") or {}).get("Variables") or {}
        timeouts = features.task_timeouts(self.template.asl)
        self.router.task_timeouts = _stage_timeouts(self.template, timeouts)
        self._env_notes = self._exit.enter_context(self.router.environment(envs))
        self.notes += self._env_notes

    # --- inputs ------------------------------------------------------------------------
    def upload_inputs(self, paths: list[Path | str]) -> tuple[list[str], list[dict]]:
        """Upload local image files (folders expanded, sorted) to the input bucket.

        Returns ``(uris, missing)``; ``missing`` has ``{"path", "uri", "error"}`` for files
        that do not exist: their URIs are still returned so the workflow records them failed.
        """
        uris, missing = [], []
        for item in paths:
            path = Path(item)
            files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
            for f in files:
                uri = f"s3://{self.input_bucket}/{f.name}"
                if f.is_file():
                    self.put_file(f, self.input_bucket, f.name)
                else:
                    missing.append({"path": str(f), "uri": uri, "error": "local file not found"})
                uris.append(uri)
        return uris, missing

    # --- executions --------------------------------------------------------------------
    def start(self, execution_input: dict, name: str | None = None) -> str:
        sfn = self.client("stepfunctions")
        name = name or f"local-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        return sfn.start_execution(
            stateMachineArn=self.stack.state_machine_arn,
            name=name,
            input=json.dumps(execution_input),
        )["executionArn"]

    def progress(self, arn: str, started: float, status: str | None = None) -> Progress:
        """Items done / total of the running execution. The total is asked of the Map run
        until it has read its items (then it is fixed); ``done`` is the images Store has
        recorded, read from the invokes this engine saw, so polling costs no API calls (each
        one holds the GIL that the stages' threads need)."""
        if status is None:
            status = self.client("stepfunctions").describe_execution(executionArn=arn)["status"]
        total = self._totals.get(arn)
        if total is None:
            counts = [c for c in self._map_run_counts(arn)
                      if c.get("total") or c.get("status") != "RUNNING"]
            if counts:
                total = self._totals[arn] = sum(c.get("total", 0) for c in counts)
        stored = {img for a in self.router.attempts[self._first_attempt:]
                  if a.stage == "store" and a.outcome == "ok" for img in a.images}
        done = len(stored) if total is None else min(len(stored), total)
        return Progress(status, total, done, self._failed_images(), time.monotonic() - started)

    def _map_run_counts(self, arn: str) -> list[dict]:
        sfn = self.client("stepfunctions")
        try:
            runs = sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
            described = [sfn.describe_map_run(mapRunArn=r["mapRunArn"]) for r in runs]
            return [{**d["itemCounts"], "status": d["status"]} for d in described]
        except Exception:  # moto 5.2.5 raises AttributeError before the execution's env exists
            return []

    def _failed_images(self) -> int:
        """Images recorded failed so far in this execution: Store's ``failed`` count per batch
        it stored, plus one-image invokes whose last attempt at a stage failed for good."""
        last: dict[tuple, Attempt] = {}
        stored: dict[tuple, int] = {}
        retried = features.retried_errors(self.template.asl)
        for a in self.router.attempts[self._first_attempt:]:
            if a.failed_images is not None:
                stored[a.images] = a.failed_images
            elif a.image is not None:
                last[(a.stage, a.image)] = a
        singles = {img for (_, img), a in last.items()
                   if a.outcome != "ok" and a.error_type not in retried}
        return len(singles) + sum(stored.values())

    def wait(
        self, arn: str, *, on_progress: Callable[[Progress], None] | None = None,
        poll_s: float = 0.25, timeout_s: float | None = None,
    ) -> dict:
        sfn = self.client("stepfunctions")
        started = time.monotonic()
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            if on_progress is not None:
                on_progress(self.progress(arn, started, desc["status"]))
            if desc["status"] in TERMINAL:
                return desc
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                sfn.stop_execution(executionArn=arn, error="LocalTimeout")
                return sfn.describe_execution(executionArn=arn)
            time.sleep(poll_s)

    def execute(
        self, execution_input: dict, *, name: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, timeout_s: float | None = None,
        poll_s: float = 0.25,
    ) -> LocalRun:
        """Start an execution, wait for it, fetch the summary it wrote."""
        started = time.monotonic()
        first_attempt = self._first_attempt = len(self.router.attempts)
        first_wait = len(self.clock.waits)
        self.router.reset_attempt_numbers()
        metered = self.meter.snapshot()
        arn = self.start(execution_input, name)
        desc = self.wait(arn, on_progress=on_progress, timeout_s=timeout_s, poll_s=poll_s)
        requests = difference(self.meter.snapshot(), metered)
        output = json.loads(desc["output"]) if desc.get("output") else None
        run = LocalRun(
            execution_arn=arn, status=desc["status"], output=output,
            error=desc.get("error"), cause=desc.get("cause"), summary=None,
            attempts=self.router.attempts[first_attempt:],
            retry_waits=self.clock.waits[first_wait:], notes=list(self.notes),
            elapsed_s=time.monotonic() - started,
        )
        run.summary = self._fetch_summary(output) or self._summary_from_history(arn)
        if run.summary:
            run.batch_id = run.summary.get("batch_id")
        run.counts = self.count(arn, run.attempts, requests)
        from yolo_sfn.bench.cost import aws_cost

        run.cost = aws_cost(run.counts, run.counts["images"])
        return run

    def count(self, arn: str, attempts: list[Attempt], requests: dict) -> dict:
        """What the execution ``arn`` would be billed for on AWS, counted.

        ``attempts``: its Lambda invokes; ``requests``: ``Meter`` counts over its run. Returns
        ``{"images", "lambda_invocations", "lambda_gb_s", "lambda_gb_s_by_arch",
        "sfn_standard_transitions", "sfn_express_requests", "sfn_express_gb_s", "s3_get",
        "s3_put", "s3_list", "s3_head", "dynamodb_write_units", "requests"}``.
        """
        from yolo_sfn.bench.cost import express_gb_s, scaled_lambda_ms

        by_arch: dict[str, float] = {}
        invoked = [a for a in attempts if a.outcome != "throttled"]  # a 429 runs nothing
        billed_s = {}  # id(attempt) -> billed seconds at its memory
        for a in invoked:
            ms = a.cpu_ms if a.cpu_ms is not None else a.duration_ms
            billed_s[id(a)] = scaled_lambda_ms(ms, a.memory_mb or 128) / 1000.0
            arch = a.arch or "x86_64"
            by_arch[arch] = by_arch.get(arch, 0.0) + billed_s[id(a)] * (a.memory_mb or 128) / 1024
        children = aslext.LEDGER.pop(arn)
        express = [c for c in children if c.execution_type == "EXPRESS"]
        express_s = _child_seconds(express, invoked, billed_s)
        events = self.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
        types: dict[str, int] = {}
        for e in events:
            types[e["type"]] = types.get(e["type"], 0) + 1
        return {
            "images": sum(c.get("total", 0) for c in self._map_run_counts(arn)),
            "lambda_invocations": len(invoked),
            "lambda_gb_s": sum(by_arch.values()),
            "lambda_gb_s_by_arch": by_arch,
            "sfn_standard_transitions": aslext.transitions_of(types) + len(children) + sum(
                c.transitions for c in children if c.execution_type != "EXPRESS"),
            "sfn_express_requests": len(express),
            "sfn_express_gb_s": sum(express_gb_s(sec) for sec in express_s),
            **{k: requests.get(k, 0) for k in ("s3_get", "s3_put", "s3_list", "s3_head",
                                                "dynamodb_write_units")},
            "requests": requests.get("requests", {}),
        }

    def _fetch_summary(self, output: dict | None) -> dict | None:
        uri = _find_summary_uri(output)
        if not uri:
            return None
        return self.get_json(uri)

    def _summary_from_history(self, arn: str) -> dict | None:
        """A FAILED execution has no output, but it may have written its summary before
        failing: the last state output in its history naming a ``summary_uri``."""
        events = self.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
        for e in reversed(events):
            text = (e.get("stateExitedEventDetails") or {}).get("output")
            if text and "summary_uri" in text:
                try:
                    return self._fetch_summary(json.loads(text))
                except (ValueError, LookupError, OSError):
                    return None
        return None

    def get_json(self, uri: str) -> Any:
        bucket, key = split_s3_uri(uri)
        body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return json.loads(body)


def _child_seconds(children: list, attempts: list[Attempt], billed_s: dict) -> list[float]:
    """Each child's estimated duration: the billed seconds of the Lambda invokes carrying its
    images (its local wall time when none can be told apart)."""
    owner = {img: i for i, c in enumerate(children) for img in c.images}
    seconds = [0.0] * len(children)
    found = [False] * len(children)
    for a in attempts:
        i = owner.get(a.images[0]) if a.images else None
        if i is not None:
            seconds[i] += billed_s[id(a)]
            found[i] = True
    return [s if ok else c.duration_s for s, ok, c in zip(seconds, found, children, strict=True)]


def _reset_handler_clients() -> None:
    try:
        from yolo_sfn.workflow.aws import reset_clients
    except ImportError:
        return
    reset_clients()


def _find_summary_uri(output: Any) -> str | None:
    if isinstance(output, dict):
        uri = output.get("summary_uri")
        if isinstance(uri, str):
            return uri
        for value in output.values():
            found = _find_summary_uri(value)
            if found:
                return found
    return None


def _stage_timeouts(tpl: Template, by_state: dict[str, tuple[int, str]]) -> dict[str, float]:
    """Smallest Task TimeoutSeconds per stage, by the function the Task invokes."""
    out: dict[str, float] = {}
    for seconds, ref in by_state.values():
        for stage, spec in tpl.functions.items():
            if spec.logical_id.lower() in ref.lower() or f"{stage}function" in ref.lower():
                out[stage] = min(out.get(stage, seconds), seconds)
    return out


def _make_bucket(s3: Any, bucket: str, region: str) -> None:
    kwargs = {}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket, **kwargs)


@contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    set_environ(values)
    try:
        yield
    finally:
        set_environ(saved)
