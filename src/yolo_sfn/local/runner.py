"""``yolo-sfn run``: one batch through the embedded local engine, outputs into a folder.

Inputs are either local image paths (files or folders), uploaded to the local input bucket
``yolo-sfn-input`` under their file names, or one execution-input event file
(``events/<batch>.json``). In an event file, ``s3://`` URIs refer to local files:

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

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolo_sfn.errors import InputFileError, InputValidationError
from yolo_sfn.local.engine import INPUT_BUCKET, LocalEngine, LocalRun, Progress, split_s3_uri
from yolo_sfn.local.invoke import Fault

STAGES = ("preprocess", "infer", "postprocess", "store")


@dataclass
class Inputs:
    """What to upload and what to start."""

    execution_input: dict
    uploads: dict[str, Path] = field(default_factory=dict)  # s3 uri -> local file
    missing: list[dict] = field(default_factory=list)  # {"path", "uri", "error"}
    buckets: set[str] = field(default_factory=lambda: {INPUT_BUCKET})
    notes: list[str] = field(default_factory=list)  # what the user should know about the inputs


def _add_file(inputs: Inputs, uri: str, path: Path) -> None:
    inputs.buckets.add(split_s3_uri(uri)[0])
    if path.is_file():
        inputs.uploads[uri] = path
    else:
        inputs.missing.append({"path": str(path), "uri": uri, "error": "local file not found"})


def _unique_uri(inputs: Inputs, f: Path) -> str:
    """``s3://yolo-sfn-input/<file name>``; a second, different file with the same name goes
    under ``<n>/<file name>`` so it is not overwritten."""
    taken = {**inputs.uploads, **{m["uri"]: Path(m["path"]) for m in inputs.missing}}
    uri, n = f"s3://{INPUT_BUCKET}/{f.name}", 1
    while uri in taken and Path(taken[uri]).resolve() != f.resolve():
        n += 1
        uri = f"s3://{INPUT_BUCKET}/{n}/{f.name}"
    return uri


def inputs_from_paths(paths: list[str | Path]) -> Inputs:
    """Local files/folders -> ``{"images": [s3://yolo-sfn-input/<name>, ...]}``."""
    inputs = Inputs(execution_input={})
    uris, empty, skipped = [], [], []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            entries = sorted(path.iterdir())
            files = [p for p in entries if p.is_file()]
            skipped += [str(p) for p in entries if p.is_dir()]
            if not files:
                empty.append(str(path))
        else:
            files = [path]
        for f in files:
            uri = _unique_uri(inputs, f)
            _add_file(inputs, uri, f)
            uris.append(uri)
    if skipped:
        inputs.notes.append(f"folders are not searched recursively: skipped {len(skipped)} "
                            f"sub-folder(s): {', '.join(skipped[:5])}"
                            + (", ..." if len(skipped) > 5 else ""))
    if not uris:
        raise InputValidationError(f"no input images: {', '.join(empty)} has no files"
                                   + (" (sub-folders are not searched)" if skipped else ""))
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
    faults: tuple[Fault, ...] = ()
    retry_scale: float = 1.0
    root: Path | None = None
    annotate: bool = True


def run_batch(
    inputs: Inputs, opts: RunOptions, on_progress: Callable[[Progress], None] | None = None
) -> tuple[LocalRun, dict]:
    """Deploy, upload, execute, write outputs. Returns the run and ``{"written": ...}``."""
    from yolo_sfn.local.engine import _make_bucket

    model = opts.model
    if model is None:
        from yolo_sfn.demo import ensure_demo_model

        model = ensure_demo_model()
    execution_input = dict(inputs.execution_input)
    for name in ("score", "iou", "resize"):
        value = getattr(opts, name)
        if value is not None:
            execution_input[name] = value
    with ExitStack() as stack:
        logs = None
        if opts.out_dir is not None:
            Path(opts.out_dir).mkdir(parents=True, exist_ok=True)
            logs = stack.enter_context(open(Path(opts.out_dir) / "function-logs.jsonl", "w"))
        eng = stack.enter_context(LocalEngine(
            opts.root, faults=list(opts.faults), retry_scale=opts.retry_scale,
            function_logs=logs))
        params = {"InputBucketNames": ",".join(sorted(inputs.buckets))}
        if opts.concurrency is not None:
            if "MapConcurrency" not in eng.template.parameters:
                eng.notes.append("template has no MapConcurrency parameter: --concurrency ignored")
            else:
                params["MapConcurrency"] = opts.concurrency
        eng.deploy(model, **params)
        s3 = eng.client("s3")
        for bucket in inputs.buckets:
            _make_bucket(s3, bucket, eng.region)
        for uri, path in inputs.uploads.items():
            bucket, key = split_s3_uri(uri)
            s3.upload_file(str(path), bucket, key)
        run = eng.execute(execution_input, on_progress=on_progress)
        run.extra["missing_inputs"] = inputs.missing
        run.extra["input_notes"] = inputs.notes
        written = write_outputs(eng, run, inputs, opts) if opts.out_dir else {}
    return run, written


def write_outputs(eng: LocalEngine, run: LocalRun, inputs: Inputs, opts: RunOptions) -> dict:
    """DIR/summary.json, DIR/results/<image_id>.json, DIR/annotated/<name>.jpg."""
    out = Path(opts.out_dir)
    _clear_previous(out, inputs)
    (out / "results").mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {"summary": None, "results": [], "annotated": []}
    if run.summary is None:
        return written
    (out / "summary.json").write_text(json.dumps(run.summary, indent=2))
    written["summary"] = str(out / "summary.json")
    results = {}
    for img in run.summary.get("images", []):
        if not img.get("result_uri"):
            continue
        result = eng.get_json(img["result_uri"])
        results[img["image_id"]] = result
        path = out / "results" / f"{img['image_id']}.json"
        path.write_text(json.dumps(result, indent=2))
        written["results"].append(str(path))
    run.extra["results"] = results
    if opts.annotate:
        written["annotated"] = _annotate(eng, run, inputs, out / "annotated")
    _record_outputs(out, written)
    return written


OUTPUTS_RECORD = ".yolo-sfn-outputs.json"  # in DIR: the files the last run wrote there


def _clear_previous(out: Path, inputs: Inputs) -> None:
    """Remove the files the previous run recorded writing in ``out`` (its summary, result
    JSONs, annotated JPEGs), so the folder never mixes two runs. Only recorded files go, and
    never one that is an input of this run; anything else in ``out`` is left alone."""
    record = out / OUTPUTS_RECORD
    try:
        names = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    keep = {p.resolve() for p in inputs.uploads.values()}
    for name in names if isinstance(names, list) else []:
        old = out / str(name)
        if ".." not in Path(str(name)).parts and old.is_file() and old.resolve() not in keep:
            old.unlink()


def _record_outputs(out: Path, written: dict) -> None:
    files = [written["summary"], *written["results"], *written["annotated"]]
    names = [str(Path(f).relative_to(out)) for f in files if f]
    (out / OUTPUTS_RECORD).write_text(json.dumps(names, indent=0), encoding="utf-8")


def _annotate(eng: LocalEngine, run: LocalRun, inputs: Inputs, folder: Path) -> list[str]:
    from yolo_sfn.core.annotate import annotate_file
    from yolo_sfn.core.image import decode_image
    from yolo_sfn.core.postprocess import Detection

    folder.mkdir(parents=True, exist_ok=True)
    done, used = [], set()
    inputs_here = {p.resolve() for p in inputs.uploads.values()}
    for result in run.extra.get("results", {}).values():
        if result.get("status") != "succeeded":
            continue
        uri = result["uri"]
        local = inputs.uploads.get(uri)
        if local is not None:
            data = local.read_bytes()
        else:
            bucket, key = split_s3_uri(uri)
            data = eng.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        stem = Path(split_s3_uri(uri)[1]).stem or result["image_id"]
        name, n = stem, 1
        # two images with one file name (from two folders): dog, dog-2; never over an input
        while name in used or (folder / f"{name}.jpg").resolve() in inputs_here:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        rgb = decode_image(data, name=uri)
        dets = [_detection(Detection, d) for d in result.get("detections", [])]
        done.append(str(annotate_file(folder / f"{name}.jpg", rgb, dets)))
    return done


def _detection(cls: Any, d: dict) -> Any:
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    return cls(d["label"], d["class_id"], d["score"], tuple(d["box"]), tuple(d["box_norm"]))


# --- reporting ---------------------------------------------------------------------------
def table_rows(run: LocalRun) -> list[dict]:
    """One row per image: image, status, #detections, top labels, per-stage ms, error."""
    results = run.extra.get("results", {})
    rows = []
    for img in (run.summary or {}).get("images", []):
        result = results.get(img["image_id"], {})
        labels: dict[str, int] = {}
        for d in result.get("detections", []):
            labels[d["label"]] = labels.get(d["label"], 0) + 1
        top = list(labels.items())[:3]  # detections come score-first: labels by best score
        err = img.get("error")
        rows.append({
            "image": split_s3_uri(img["uri"])[1] if img["uri"].startswith("s3://") else img["uri"],
            "status": img["status"],
            "detections": img.get("num_detections", 0),
            "top_labels": ", ".join(f"{k}x{v}" if v > 1 else k for k, v in top),
            "ms": {s: (result.get("timings_ms") or {}).get(s) for s in STAGES},
            "error": f"{err.get('stage')}: {err.get('type')}: {err.get('message')}" if err else "",
        })
    return rows


def format_table(rows: list[dict]) -> str:
    head = ["image", "status", "#det", "top labels", *[f"{s[:5]} ms" for s in STAGES], "error"]
    body = []
    for r in rows:
        ms = [f"{v:.0f}" if isinstance(v, int | float) else "-" for v in r["ms"].values()]
        body.append([r["image"], r["status"], str(r["detections"]), r["top_labels"], *ms,
                     r["error"][:80]])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)
