"""The report of a deployed execution, from what it stored (``yolo-sfn report EXECUTION``).

Reads through :mod:`yolo_sfn.remote.api` (boto3's usual credential/region/endpoint chain):
the execution (status, start, stop), ``results/<batch_id>/summary.json`` (else the batch's
records, when the execution ended before Summarize), each image's result JSON, an optional
``results/<batch_id>/cost.json``, and the input images themselves for thumbnails (when this
caller may read them; otherwise the card says "no preview"). Reads run in a few threads with
a bounded window, like the thumbnails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from yolo_sfn.report import data as report_data
from yolo_sfn.report.html import Link, Page, render
from yolo_sfn.report.thumbs import Source, ordered_map
from yolo_sfn.workflow.s3uri import split_s3_uri

MAX_THUMB_SOURCE_BYTES = 50 * 1024 * 1024  # larger inputs get no thumbnail


def _console_url(uri: str) -> str:
    """The S3 console page of an object (a link a person can open; nothing is fetched)."""
    bucket, _, key = uri[5:].partition("/")
    return (f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}"
            f"?prefix={quote(key, safe='')}")


def _get_json(s3: Any, uri: str | None) -> Any:
    from yolo_sfn.remote import api

    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return None
    body = api._get(s3, *split_s3_uri(uri))
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _summary(ev: Any, s3: Any, notes: list[str]) -> dict:
    from yolo_sfn.remote import api

    out = ev.output or {}
    summary = _get_json(s3, out.get("summary_uri"))
    if summary is None and ev.bucket and ev.batch_id:
        summary = _get_json(s3, f"s3://{ev.bucket}/results/{ev.batch_id}/summary.json")
    if isinstance(summary, dict):
        return summary
    mine, _ = api.split_by_execution(api.records(ev), ev.arn)
    notes.append("The execution stored no summary.json (it ended before Summarize): the "
                 f"report lists the {len(mine)} image record(s) it wrote.")
    return {"batch_id": ev.batch_id, "execution_arn": ev.arn, "submitted": len(mine),
            "images": [{k: r.get(k) for k in ("image_id", "uri", "status", "result_uri",
                                              "num_detections", "error")} for r in mine]}


def _results(s3: Any, summary: dict, workers: int):
    def fetch(entry: dict) -> dict | None:
        try:
            return _get_json(s3, entry.get("result_uri"))
        except Exception:
            return None

    for _entry, result in ordered_map(fetch, summary.get("images") or [], workers=workers):
        if isinstance(result, dict):
            yield result


def _execution(desc: dict) -> dict:
    start, stop = desc.get("startDate"), desc.get("stopDate")
    elapsed = (stop - start).total_seconds() if start and stop else None
    iso = lambda v: v.isoformat(timespec="seconds") if hasattr(v, "isoformat") else v  # noqa: E731
    return {"status": desc.get("status"), "start": iso(start), "stop": iso(stop),
            "elapsed_s": elapsed}


def report_for_execution(
    execution: str, stack: str | None = None, path: Path | str = "report.html", *,
    thumbnails: bool = True, workers: int = 8,
) -> Path:
    """Write the report of a deployed execution (ARN, or name with ``stack``) to ``path``."""
    from yolo_sfn.remote import api

    ev = api.view(execution, stack)
    s3 = api.client("s3")
    notes: list[str] = []
    summary = _summary(ev, s3, notes)
    built = report_data.build(summary, _results(s3, summary, workers))
    summary.setdefault("execution_arn", ev.arn)
    cost = None
    if ev.bucket and ev.batch_id:
        cost = _get_json(s3, f"s3://{ev.bucket}/results/{ev.batch_id}/cost.json")
    unread: list[str] = []
    result_uris = {e.get("image_id"): e.get("result_uri") for e in summary.get("images") or []
                   if isinstance(e, dict)}

    def source(row: report_data.ImageRow) -> Source | None:
        if not thumbnails or not row.uri.startswith("s3://"):
            return None
        bucket, key = split_s3_uri(row.uri)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if head.get("ContentLength", 0) > MAX_THUMB_SOURCE_BYTES:
                return None
            return Source(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:
            unread.append(row.uri)
            return None

    def links(row: report_data.ImageRow) -> list[Link]:
        out = []
        if row.uri.startswith("s3://"):
            out.append(Link("input in S3", _console_url(row.uri)))
        result_uri = result_uris.get(row.image_id)
        if isinstance(result_uri, str) and result_uri.startswith("s3://"):
            out.append(Link("result JSON in S3", _console_url(result_uri)))
        return out

    page = Page(title=f"yolo-sfn report: {summary.get('batch_id') or ev.batch_id}",
                origin=f"execution {ev.arn}", source=source, links=links,
                notes=_Notes(notes, unread),
                notes_title="Report notes", notes_intro="",
                cost=cost if isinstance(cost, dict) else None,
                execution=_execution(ev.desc), thumb_workers=workers)
    return render(Path(path), built, page)


class _Notes:
    """The report's notes; the count of unreadable inputs is only known once the thumbnail
    grid (rendered before the notes) is done, so it is read when the notes are iterated."""

    def __init__(self, notes: list[str], unread: list[str]):
        self.notes, self.unread = notes, unread

    def __bool__(self) -> bool:
        return bool(self.notes or self.unread)

    def __iter__(self):
        yield from self.notes
        if self.unread:
            yield (f"{len(self.unread)} input image(s) could not be read for thumbnails "
                   f"(permissions, deleted, or not an s3:// URI), e.g. {self.unread[0]}.")
