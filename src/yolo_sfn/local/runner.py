"""``yolo-sfn run``: one batch through the embedded local engine, outputs into a folder.

Inputs are either local image paths (files or folders), uploaded to the local input bucket
``yolo-sfn-input`` under their file names (``s3_safe_name``: a name S3 cannot carry is
``%XX``-escaped; ``local_path`` in the summary maps each image back), or one execution-input
event file (``events/<batch>.json``). Folders are read one level deep and only image files are
sent (``inputs_from_paths``). Outputs go to ``--out`` through ``yolo_sfn.outputs``'
record, so nothing yolo-sfn did not write there is ever replaced (``write_outputs``).
In an event file, ``s3://`` URIs refer to local files:

* an optional ``"local_files": {"s3://bucket/key": "relative/or/absolute/path", ...}`` maps
  objects to files (relative to the project root) - the mapping is uploaded and removed from
  the execution input;
* any other ``s3://<bucket>/<key>`` in ``images`` is looked up as ``testdata/images/<key>``,
  then as ``testdata/images/<file name of key>`` (``s3://yolo-sfn-input/samples/dog.jpg`` ->
  ``testdata/images/dog.jpg``);
* a ``prefix`` input uploads every ``testdata/images`` file under that prefix
  (``s3://b/p/`` -> ``s3://b/p/dog.jpg``, ...); a ``manifest``
  must be in ``local_files`` (its listed images then resolve by the two rules above).

Every bucket named is created locally and allowed through ``InputBucketNames``. Objects whose
file does not exist are not uploaded: the workflow reports them as failed inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_sfn.contract import (
    IMAGE_EXTENSIONS,
    IMAGE_STAGES,
    RAW_EXTENSIONS,
    RESULTS_PREFIX,
    UNDECODED_IMAGE_EXTENSIONS,
)
from yolo_sfn.errors import InputFileError, InputValidationError
from yolo_sfn.local.engine import INPUT_BUCKET, LocalEngine, LocalRun, Progress
from yolo_sfn.local.invoke import Fault
from yolo_sfn.outputs import RECORD, OutputRecord, shown, unsafe_char
from yolo_sfn.workflow.s3uri import split_s3_uri


@dataclass
class Inputs:
    """What to upload and what to start."""

    execution_input: dict
    uploads: dict[str, Path] = field(default_factory=dict)  # s3 uri -> local file
    missing: list[dict] = field(default_factory=list)  # {"path", "uri", "error"}
    buckets: set[str] = field(default_factory=lambda: {INPUT_BUCKET})
    notes: list[str] = field(default_factory=list)  # what the user should know about the inputs

    def local_path(self, uri: str) -> str | None:
        """The local file an input URI came from, as given (None: an S3-only input)."""
        if uri in self.uploads:
            return os.fsdecode(self.uploads[uri])
        return next((m["path"] for m in self.missing if m["uri"] == uri), None)


def _add_file(inputs: Inputs, uri: str, path: Path) -> None:
    inputs.buckets.add(split_s3_uri(uri)[0])
    if path.is_file():
        inputs.uploads[uri] = path
    else:
        inputs.missing.append({"path": str(path), "uri": uri, "error": "local file not found"})


# --- local names -> S3 keys ----------------------------------------------------------------
MAX_SAFE_NAME_BYTES = 512


def s3_safe_name(name: str) -> str:
    """A local file name as an S3 key segment: every character S3 keys cannot carry (control
    characters such as newline and tab, bytes that are not UTF-8, Unicode non-characters) is
    written as ``%XX`` of its bytes; a name still too long ends in a hash. Other names are kept."""
    safe = "".join("".join(f"%{b:02X}" for b in os.fsencode(ch)) if unsafe_char(ch) else ch
                   for ch in name)
    if len(safe.encode("utf-8")) > MAX_SAFE_NAME_BYTES:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        safe = safe[:200] + f"-{digest}" + Path(safe).suffix[:16]
    return safe


def _unique_uri(inputs: Inputs, f: Path) -> str:
    """``s3://yolo-sfn-input/<safe file name>``; a second, different file with the same (safe)
    name goes under ``<n>/<name>`` so it is not overwritten."""
    taken = {**inputs.uploads, **{m["uri"]: Path(m["path"]) for m in inputs.missing}}
    name = s3_safe_name(f.name)
    uri, n = f"s3://{INPUT_BUCKET}/{name}", 1
    while uri in taken and Path(taken[uri]).resolve() != f.resolve():
        n += 1
        uri = f"s3://{INPUT_BUCKET}/{n}/{name}"
    return uri


# --- which files are images ----------------------------------------------------------------
_APPLEDOUBLE = b"\x00\x05\x16\x07"  # macOS "._name" metadata files, whatever their extension


@dataclass
class _Skipped:
    """Files of the inputs that are not submitted, by reason (shown as notes)."""

    folders: list[str] = field(default_factory=list)
    non_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        texts = (
            (self.folders, "folders are not searched recursively: skipped {n} sub-folder(s)"),
            (self.non_images, "skipped {n} file(s) that are not images"),
            (self.broken_links, "skipped {n} broken link(s)"),
            (self.special, "skipped {n} item(s) that are not regular files"),
            (self.outputs, "skipped {n} file(s) yolo-sfn wrote (a previous run's outputs)"),
        )
        return [f"{text.format(n=len(names))}: {', '.join(shown(x) for x in names[:5])}"
                + (", ..." if len(names) > 5 else "") for names, text in texts if names]


def _classify(path: Path, skipped: _Skipped, outputs: set[Path]) -> str | None:
    """-> "image" (submit), None (skipped, noted) or why the file cannot be read (submit it
    as a failed input)."""
    from yolo_sfn.core.image import image_format

    if path.is_symlink() and not path.exists():
        skipped.broken_links.append(f"{path} -> {os.readlink(path)}")
        return None
    if path.is_dir():
        skipped.folders.append(str(path))
        return None
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the upload for ever
        skipped.special.append(str(path))
        return None
    if path.resolve() in outputs:
        skipped.outputs.append(str(path))
        return None
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if head.startswith(_APPLEDOUBLE):
        skipped.non_images.append(str(path))
        return None
    if image_format(head) or path.suffix.lower() in (
            IMAGE_EXTENSIONS + UNDECODED_IMAGE_EXTENSIONS + RAW_EXTENSIONS):
        return "image"  # by name but not by content (empty, corrupt, raw): submitted, it fails
    skipped.non_images.append(str(path))
    return None


def _expand(path: Path) -> list[Path]:
    """A folder's entries (sorted), or the file itself; a path that is not there: an error."""
    if path.is_dir():
        try:
            return sorted(path.iterdir())
        except OSError as e:
            raise InputFileError(f"{shown(path)}: cannot list folder ({e.strerror or e})") from None
    if path.is_symlink() and not path.exists():
        raise InputFileError(f"{shown(path)}: broken link (to {shown(os.readlink(path))})")
    if not path.exists():
        raise InputFileError(f"{shown(path)}: no such file or folder")
    return [path]


def inputs_from_paths(paths: list[str | Path], *, outputs: set[Path] = frozenset()) -> Inputs:
    """Local files/folders -> ``{"images": [s3://yolo-sfn-input/<safe name>, ...]}``.

    Folders are read one level deep. Files that are not images (by their header, or an image
    extension), broken links, non-regular files and ``outputs`` (resolved paths a previous run
    wrote) are skipped and named in ``notes``; a path that does not exist is an
    ``InputFileError`` before anything runs. A file that cannot be read is submitted without
    an upload (``missing``), so the run reports it as that image's failure.
    """
    inputs = Inputs(execution_input={})
    uris, skipped = [], _Skipped()
    for item in paths:
        for f in _expand(Path(item)):
            kind = _classify(f, skipped, outputs)
            if kind is None:
                continue
            uri = _unique_uri(inputs, f)
            if kind == "image":
                _add_file(inputs, uri, f)
            elif uri not in inputs.uploads:
                inputs.missing.append({"path": os.fsdecode(f), "uri": uri, "error": kind})
            uris.append(uri)
    inputs.notes = skipped.notes()
    if not uris:
        raise InputValidationError(
            "no input images in " + ", ".join(shown(p) for p in paths)
            + ("; " + "; ".join(inputs.notes) if inputs.notes else ""))
    inputs.execution_input = {"images": uris}
    return inputs


def inputs_from_event(path: Path, root: Path) -> Inputs:
    """An ``events/*.json`` execution input whose s3:// URIs name local files (see module doc)."""
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputFileError(f"{path}: cannot read event file ({e})") from e
    if not isinstance(event, dict):
        raise InputValidationError(f"{path}: an execution input must be a JSON object")
    local_files = event.pop("local_files", None) or {}
    inputs = Inputs(execution_input=event)
    testdata = root / "testdata" / "images"
    for uri, rel in local_files.items():
        _add_file(inputs, uri, (root / rel) if not Path(rel).is_absolute() else Path(rel))
    for uri in event.get("images") or []:
        if isinstance(uri, str) and uri.startswith("s3://") and uri not in local_files:
            key = split_s3_uri(uri)[1]
            path = testdata / key
            if not path.is_file():
                path = testdata / Path(key).name
            _add_file(inputs, uri, path)
    prefix = event.get("prefix")
    if isinstance(prefix, str) and prefix.startswith("s3://"):
        bucket, _, key_prefix = prefix[5:].partition("/")
        inputs.buckets.add(bucket)
        for f in sorted(testdata.rglob("*")):
            if f.is_file():
                key = key_prefix + f.relative_to(testdata).as_posix()
                inputs.uploads.setdefault(f"s3://{bucket}/{key}", f)
    return inputs


@dataclass
class RunOptions:
    model: Path | None = None
    out_dir: Path | None = None
    score: float | None = None
    iou: float | None = None
    resize: str | None = None
    concurrency: int | None = None
    batch_size: int | None = None
    faults: tuple[Fault, ...] = ()
    retry_scale: float = 1.0
    root: Path | None = None
    annotate: bool = True


FUNCTION_LOGS = "function-logs.jsonl"
PARTIAL_LOGS = ".yolo-sfn-function-logs.partial.jsonl"  # renamed to FUNCTION_LOGS at the end
FIXED_OUTPUTS = ("summary.json", FUNCTION_LOGS, "cost.json", "report.html")
OUTPUT_FOLDERS = ("results", "annotated")


def check_out_dir(out: Path) -> None:
    """Before anything runs: ``out``'s fixed output names are free or were written by
    yolo-sfn (its record), and its output folders are folders. InputFileError otherwise."""
    rec = OutputRecord(out, "run")
    for name in FIXED_OUTPUTS:
        if not rec.free(out / name):
            raise InputFileError(f"--out {shown(out)}: {name} is there and yolo-sfn did not "
                                 f"write it (not in {RECORD}): move it or choose another --out")
    for name in OUTPUT_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise InputFileError(f"--out {shown(out)}: {name} is there and is not a folder")


def previous_outputs(out: Path | None) -> set[Path]:
    """The files yolo-sfn recorded writing directly in ``out`` (resolved): with ``--out``
    the input folder, they are not read back as images. (Its sub-folders ``results/`` and
    ``annotated/`` are not read anyway; named as inputs, annotated copies are images.)"""
    if out is None:
        return set()
    here = Path(out).resolve()
    return {p for p in OutputRecord(out, "run").recorded_paths() if p.parent == here} | {
        here / RECORD, here / PARTIAL_LOGS}


def run_batch(
    inputs: Inputs, opts: RunOptions, on_progress: Callable[[Progress], None] | None = None
) -> tuple[LocalRun, dict]:
    """Deploy, upload, execute, write outputs. Returns the run and what was written
    (``{"summary", "results", "annotated", "function_logs", "errors"}``).

    Ctrl-C during the execution stops it and keeps what finished: ``run.status`` is
    ``ABORTED``, the summary lists every image (``interrupted`` for the unfinished ones) and
    the outputs are written as for a finished run. Ctrl-C before any image finished leaves
    ``out_dir`` as it was (KeyboardInterrupt propagates); Ctrl-C while the outputs are written
    raises ``WritingInterrupted`` (the files written so far are in the record)."""
    model = opts.model
    if model is None:
        from yolo_sfn.demo import ensure_demo_model

        model = ensure_demo_model()
    execution_input = dict(inputs.execution_input)
    for name in ("score", "iou", "resize"):
        value = getattr(opts, name)
        if value is not None:
            execution_input[name] = value
    out = Path(opts.out_dir) if opts.out_dir is not None else None
    with ExitStack() as stack:
        logs = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            stack.callback(_remove, out / PARTIAL_LOGS)  # renamed into place when written
            logs = stack.enter_context(open(out / PARTIAL_LOGS, "w", encoding="utf-8"))
        eng = stack.enter_context(LocalEngine(
            opts.root, faults=list(opts.faults), retry_scale=opts.retry_scale,
            function_logs=logs))
        _deploy(eng, model, inputs, opts)
        _upload(eng, inputs)
        started = time.monotonic()
        try:
            run = eng.execute(execution_input, on_progress=on_progress)
        except KeyboardInterrupt:
            run = _interrupted(eng, execution_input, time.monotonic() - started)
            if not run.summary["succeeded"] + run.summary["failed"]:
                raise  # nothing to keep: the previous run's outputs stay as they are
        run.extra["missing_inputs"] = inputs.missing
        run.extra["input_notes"] = inputs.notes
        _add_local_paths(run, inputs)
        if logs is not None:
            logs.flush()
        try:
            written = write_outputs(eng, run, inputs, opts) if out is not None else {}
        except KeyboardInterrupt:
            raise WritingInterrupted from None
    return run, written


class WritingInterrupted(KeyboardInterrupt):
    """Ctrl-C while the outputs were being written: what was written is in the record."""


def _remove(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


def _deploy(eng: LocalEngine, model: Path, inputs: Inputs, opts: RunOptions) -> None:
    from yolo_sfn.local.engine import _make_bucket

    params = {"InputBucketNames": ",".join(sorted(inputs.buckets))}
    for name, option, value in (("MapConcurrency", "--concurrency", opts.concurrency),
                                ("BatchSize", "--batch-size", opts.batch_size)):
        if value is None:
            continue
        if name not in eng.template.parameters:
            eng.notes.append(f"template has no {name} parameter: {option} ignored")
        else:
            params[name] = value
    eng.deploy(model, **params)
    s3 = eng.client("s3")
    for bucket in inputs.buckets:
        _make_bucket(s3, bucket, eng.region)


def _upload(eng: LocalEngine, inputs: Inputs) -> None:
    """Upload every input file; one that cannot be read now fails alone (``missing``)."""
    for uri, path in list(inputs.uploads.items()):
        bucket, key = split_s3_uri(uri)
        try:
            eng.put_file(path, bucket, key)
        except OSError as e:
            del inputs.uploads[uri]
            inputs.missing.append({"path": os.fsdecode(path), "uri": uri,
                                   "error": f"cannot read ({e.strerror or e})"})


def _add_local_paths(run: LocalRun, inputs: Inputs) -> None:
    """Each summary image gets ``local_path`` (the file as given, or None); an input that was
    never uploaded gets its local error (``stage`` "upload") instead of the workflow's
    ``ObjectNotFoundError`` on an internal URI."""
    missing = {m["uri"]: m for m in inputs.missing}
    for img in (run.summary or {}).get("images", []):
        img["local_path"] = inputs.local_path(img.get("uri", ""))
        m = missing.get(img.get("uri"))
        if m is not None and img.get("status") != "succeeded":
            img["workflow_error"] = img.get("error")
            img["error"] = {"stage": "upload", "type": "InputFileError",
                            "message": f"{shown(m['path'])}: {m['error']}"}


# --- Ctrl-C: keep what finished ------------------------------------------------------------
def _interrupted(eng: LocalEngine, execution_input: dict, elapsed_s: float) -> LocalRun:
    """Stop the execution and build a summary from the per-image results already stored:
    every submitted image once, ``interrupted`` where no result was stored."""
    from yolo_sfn.workflow.stages import image_id_for

    sfn = eng.client("stepfunctions")
    arn = ""
    with suppress(Exception):  # best effort: moto may already be tearing the execution down
        for ex in sfn.list_executions(stateMachineArn=eng.stack.state_machine_arn)["executions"]:
            arn = arn or ex["executionArn"]
            if ex["status"] == "RUNNING":
                sfn.stop_execution(executionArn=ex["executionArn"], error="Interrupted",
                                   cause="Ctrl-C")
    found = _stored_results(eng)
    images, classes = [], {}
    uris = [u for u in execution_input.get("images", []) if isinstance(u, str)]
    for uri in dict.fromkeys(uris):
        key, doc = found.get(uri, (None, None))
        if doc is None:
            images.append({"image_id": image_id_for(uri), "uri": uri, "status": "interrupted",
                           "result_uri": None, "num_detections": 0,
                           "error": {"stage": None, "type": "Interrupted",
                                     "message": "not finished: the run was interrupted"}})
            continue
        dets = doc.get("detections") or []
        for d in dets:
            classes[d.get("label")] = classes.get(d.get("label"), 0) + 1
        images.append({"image_id": doc.get("image_id"), "uri": uri, "status": doc.get("status"),
                       "result_uri": f"s3://{eng.stack.bucket}/{key}",
                       "num_detections": len(dets), "error": doc.get("error")})
    count = {s: sum(1 for i in images if i["status"] == s) for s in ("succeeded", "failed")}
    summary = {"batch_id": None, "execution_arn": arn, "interrupted": True,
               "submitted": len(uris), "unique": len(images), **count,
               "not_finished": sum(1 for i in images if i["status"] == "interrupted"),
               "class_counts": classes, "images": images}
    return LocalRun(execution_arn=arn, status="ABORTED", output=None, error="Interrupted",
                    cause="Ctrl-C: the execution was stopped; finished images are kept",
                    summary=summary, attempts=list(eng.router.attempts), retry_waits=[],
                    notes=list(eng.notes), elapsed_s=elapsed_s)


def _stored_results(eng: LocalEngine) -> dict[str, tuple[str, dict]]:
    """uri -> (key, per-image result) for every result JSON in the artifacts bucket."""
    s3 = eng.client("s3")
    found: dict[str, tuple[str, dict]] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=eng.stack.bucket,
                                                         Prefix=RESULTS_PREFIX)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith(".json") or key.endswith("/summary.json"):
                continue
            with suppress(Exception):
                doc = eng.get_json(f"s3://{eng.stack.bucket}/{key}")
                if isinstance(doc, dict) and doc.get("status") in ("succeeded", "failed"):
                    found[doc["uri"]] = (key, doc)
    return found


# --- outputs -------------------------------------------------------------------------------
def write_outputs(eng: LocalEngine, run: LocalRun, inputs: Inputs, opts: RunOptions) -> dict:
    """DIR/results/<image_id>.json, DIR/annotated/<name>.jpg, DIR/summary.json (last: it lists
    what was written), DIR/function-logs.jsonl. The previous run's files go first; a file
    yolo-sfn did not write is never replaced; a write that fails is reported in ``errors``
    and the summary, and the others go on. The record of written files is saved before and
    after (``yolo_sfn.outputs``)."""
    out = Path(opts.out_dir)
    rec = OutputRecord(out, "run")
    keep = {p.resolve() for p in inputs.uploads.values()}
    written: dict[str, Any] = {"summary": None, "results": [], "annotated": [],
                               "function_logs": None, "cost": None, "report": None,
                               "errors": []}
    layout = (*FIXED_OUTPUTS, *(f"{name}/" for name in OUTPUT_FOLDERS))
    written["errors"] += [f"{shown(out / n)}: previous output could not be removed"
                          for n in rec.clear_previous(keep, layout)]
    plan = _plan_outputs(run, inputs, opts, rec, keep, written["errors"])
    for name in FIXED_OUTPUTS:
        rec.claim(out / name)
    rec.save()  # the names about to be written, before any is
    try:
        _write_results(eng, run, plan, inputs, written, opts.annotate)
        if run.cost is not None:
            _write(out / "cost.json", json.dumps(run.cost, indent=2), written, "cost")
        if run.summary is not None:
            summary = dict(run.summary)
            summary["local_engine_notes"] = [*inputs.notes, *run.notes]
            if written["errors"]:
                summary["write_errors"] = list(written["errors"])
            _write(out / "summary.json", json.dumps(summary, indent=2), written, "summary")
            _write_report(run, summary, plan, inputs, out, written)
        if (out / PARTIAL_LOGS).is_file():
            try:
                os.replace(out / PARTIAL_LOGS, out / FUNCTION_LOGS)
                written["function_logs"] = str(out / FUNCTION_LOGS)
            except OSError as e:
                written["errors"].append(f"{shown(out / FUNCTION_LOGS)}: {e.strerror or e}")
    finally:
        rec.names = [n for n in rec.names if (out / n).exists()]
        rec.save()
    return written


def _write_report(run: LocalRun, summary: dict, plan: dict, inputs: Inputs, out: Path,
                  written: dict) -> None:
    """DIR/report.html (yolo_sfn.report) from what this run wrote; a failure is noted."""
    from yolo_sfn.errors import YoloSfnError
    from yolo_sfn.report import write_report

    annotated = {i: e["annotated"] for i, e in plan.items()
                 if e["annotated"] is not None and e["annotated"].is_file()}
    ids = {img["uri"]: img["image_id"] for img in summary.get("images", [])}
    try:
        path = write_report(
            out / "report.html", summary=summary,
            results=run.extra.get("results", {}).values(),
            notes=summary["local_engine_notes"], cost=run.cost, annotated=annotated,
            inputs={ids[u]: p for u, p in inputs.uploads.items() if u in ids},
            execution={"status": run.status, "elapsed_s": run.elapsed_s},
            thumbs=run.extra.get("thumbs"))
    except (OSError, YoloSfnError) as e:
        written["errors"].append(f"{shown(out / 'report.html')}: cannot write ({e})")
        return
    written["report"] = str(path)


def _plan_outputs(run: LocalRun, inputs: Inputs, opts: RunOptions, rec: Any, keep: set[Path],
                  errors: list[str]) -> dict[str, dict]:
    """image_id -> {"result": Path | None, "annotated": Path | None}: names that are free or
    ours, claimed in the record; an annotated copy never takes an input's name."""
    out = Path(opts.out_dir)
    plan: dict[str, dict] = {}
    taken: set[Path] = set()
    for img in (run.summary or {}).get("images", []):
        entry: dict[str, Path | None] = {"result": None, "annotated": None}
        if img.get("result_uri"):
            path = out / "results" / f"{img['image_id']}.json"
            if rec.free(path):
                entry["result"] = path
            else:
                errors.append(f"{shown(path)}: not replaced (yolo-sfn did not write it)")
        if opts.annotate and img.get("status") == "succeeded":
            local = inputs.uploads.get(img["uri"])
            stem = (local.stem if local is not None
                    else Path(split_s3_uri(img["uri"])[1]).stem) or img["image_id"]
            entry["annotated"] = rec.pick(out / "annotated", stem, ".jpg", taken, keep)
        for path in entry.values():
            if path is not None:
                rec.claim(path)
        plan[img["image_id"]] = entry
    return plan


def _write(path: Path, text: str, written: dict, what: str) -> bool:
    """Write ``text`` whole or not at all (a temporary file renamed); a failure is noted."""
    from yolo_sfn.core.annotate import write_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text.encode("utf-8"))
    except OSError as e:
        written["errors"].append(f"{shown(path)}: cannot write ({e.strerror or e})")
        return False
    if isinstance(written[what], list):
        written[what].append(str(path))
    else:
        written[what] = str(path)
    return True


ANNOTATE_WORKERS = 2  # decode, draw and encode release the GIL: one per core here


def _write_results(eng: LocalEngine, run: LocalRun, plan: dict, inputs: Inputs,
                   written: dict, annotate: bool) -> None:
    """DIR/results/<image_id>.json for every stored result and, with ``annotate``, the
    annotated copy of every succeeded image. One pass in summary order: this thread GETs
    and writes each result while ``ANNOTATE_WORKERS`` threads draw the images already
    fetched (their decode, draw and encode release the GIL). Failures are in
    ``written["errors"]``: the results' first, then the annotated copies', in summary order."""
    from concurrent.futures import ThreadPoolExecutor

    results = run.extra.setdefault("results", {})
    thumbs = run.extra.setdefault("thumbs", {})  # image_id -> report thumbnail
    s3 = eng.client("s3")
    jobs = []
    with ThreadPoolExecutor(ANNOTATE_WORKERS) as pool:
        for img in (run.summary or {}).get("images", []):
            img["result_path"] = img["annotated_path"] = None
            if not img.get("result_uri"):
                continue
            result = results.get(img["image_id"])
            if result is None:
                result = results[img["image_id"]] = eng.get_json(img["result_uri"])
            result["local_path"] = img.get("local_path")
            target = plan[img["image_id"]]["annotated"] if annotate else None
            if target is not None and result.get("status") == "succeeded":
                jobs.append((img, target, pool.submit(_annotate_one, s3, inputs, img, target,
                                                      result, thumbs)))
            path = plan[img["image_id"]]["result"]
            if path is not None and _write(path, json.dumps(result, indent=2), written,
                                           "results"):
                img["result_path"] = path.relative_to(path.parent.parent).as_posix()
        for img, path, job in jobs:
            error = job.result()
            if error is not None:
                written["errors"].append(error)
                continue
            written["annotated"].append(str(path))
            img["annotated_path"] = path.relative_to(path.parent.parent).as_posix()


def _annotate_one(s3: Any, inputs: Inputs, img: dict, path: Path, result: dict,
                  thumbs: dict) -> str | None:
    """Write ``path``, the annotated copy of one image, and put the report's thumbnail of its
    pixels in ``thumbs[image_id]`` (the report then decodes nothing); -> an error line, or
    None."""
    from yolo_sfn.core.annotate import annotate_file
    from yolo_sfn.core.image import decode_image, full_size_hw
    from yolo_sfn.core.postprocess import Detection
    from yolo_sfn.errors import YoloSfnError
    from yolo_sfn.report.thumbs import thumb_of_pixels

    uri = img["uri"]
    local = inputs.uploads.get(uri)
    try:
        if local is not None:
            data = local.read_bytes()
        else:
            bucket, key = split_s3_uri(uri)
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        rgb = decode_image(data, name=shown(local or uri))
        full_hw = full_size_hw(data, rgb)  # rgb may be a reduced decode
        dets = [_detection(Detection, d) for d in result.get("detections", [])]
        path.parent.mkdir(parents=True, exist_ok=True)
        annotate_file(path, rgb, dets, src_hw=full_hw)  # draws on a copy
        thumbs[img["image_id"]] = thumb_of_pixels(rgb, drawn=False, full_hw=full_hw)
    except (OSError, YoloSfnError) as e:
        msg = str(e) if isinstance(e, YoloSfnError) else f"{shown(path)}: {e.strerror or e}"
        return f"annotated copy of {shown(local or uri)}: {msg}"
    return None


def _detection(cls: Any, d: dict) -> Any:
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    return cls(d["label"], d["class_id"], d["score"], tuple(d["box"]), tuple(d["box_norm"]))


# --- reporting ---------------------------------------------------------------------------
def _error_text(err: dict | None, uri: str, local: str | None) -> str:
    """``stage: Type: message`` on one line, whole; the internal URI of a local file is
    replaced by the file's path."""
    if not err:
        return ""
    parts = (err.get("stage"), err.get("type"), err.get("message"))
    text = ": ".join(str(p) for p in parts if p)
    if local is not None:
        text = text.replace(uri, shown(local))
    return " ".join(text.split())


def table_rows(run: LocalRun) -> list[dict]:
    """One row per image: image (the local path where there is one), status, #detections,
    top labels, per-stage ms, error (whole)."""
    results = run.extra.get("results", {})
    rows = []
    for img in (run.summary or {}).get("images", []):
        result = results.get(img["image_id"], {})
        labels: dict[str, int] = {}
        for d in result.get("detections", []):
            labels[d["label"]] = labels.get(d["label"], 0) + 1
        top = list(labels.items())[:3]  # detections come score-first: labels by best score
        uri, local = img["uri"], img.get("local_path")
        name = split_s3_uri(uri)[1] if uri.startswith("s3://") else uri
        rows.append({
            "image": shown(local if local is not None else name),
            "status": img["status"],
            "detections": img.get("num_detections", 0),
            "top_labels": ", ".join(f"{k}x{v}" if v > 1 else k for k, v in top),
            "ms": {s: (result.get("timings_ms") or {}).get(s) for s in IMAGE_STAGES},
            "error": _error_text(img.get("error"), uri, local),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """Aligned columns; the error comes last and whole (never cut)."""
    head = ["image", "status", "#det", "top labels",
            *[f"{s[:5]} ms" for s in IMAGE_STAGES], "error"]
    body = []
    for r in rows:
        ms = [f"{v:.0f}" if isinstance(v, int | float) else "-" for v in r["ms"].values()]
        body.append([r["image"], r["status"], str(r["detections"]), r["top_labels"], *ms,
                     r["error"]])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    widths[-1] = 0  # the last column is not padded
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)
