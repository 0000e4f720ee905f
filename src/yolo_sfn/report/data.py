"""What a report shows, computed from a run's summary and per-image results. Pure Python.

Inputs (the schemas of docs/ARCHITECTURE.md):

* ``summary``: ``{"batch_id", "execution_arn", "submitted", "unique", "duplicates": [uri],
  "succeeded", "failed", "class_counts", "images": [{"image_id", "uri", "status",
  "result_uri", "num_detections", "error", "local_path"?}]}``;
* ``results``: per-image result dicts ``{"image_id", "uri", "status", "width", "height",
  "detections": [{"label", "class_id", "score", "box", "box_norm"}], "timings_ms",
  "model", "params", "error", "child"?: {"id", "size"}, "spans_ms"?: {stage: [start, end]}}``
  (epoch milliseconds). Read once, in one pass; only a compact :class:`ImageRow` per image
  is kept, so a 10,000-image batch stays a few MB here.

An image in the summary without a result still gets a row (its summary entry); a result
whose image the summary does not list is added after them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yolo_sfn.contract import IMAGE_STAGES
from yolo_sfn.workflow.messages import FAILURE_STAGES

MAX_TAGGED = 4  # detections per thumbnail that get a label tag (the best ones)


@dataclass
class Box:
    """One detection as the thumbnail draws it: ``box_norm`` = x1, y1, x2, y2 in [0, 1]."""

    label: str
    class_id: int
    score: float
    box_norm: tuple[float, float, float, float]


@dataclass
class ImageRow:
    """One image of the batch, compact."""

    image_id: str
    uri: str
    status: str  # succeeded | failed | missing (in the summary, no result)
    error: dict | None = None  # {"stage", "type", "message"}
    width: int | None = None
    height: int | None = None
    boxes: list[Box] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    child: str | None = None
    local_path: str | None = None

    @property
    def name(self) -> str:
        """The file name of the input (last part of the URI)."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1] or self.image_id

    @property
    def labels(self) -> list[str]:
        return sorted({b.label for b in self.boxes})

    @property
    def failed(self) -> bool:
        return self.status != "succeeded"


@dataclass
class Child:
    """A Distributed Map child (a batch of images): its size and each stage's span (epoch ms)."""

    id: str
    size: int
    images: int = 0
    failed: int = 0
    spans: dict[str, list[float]] = field(default_factory=dict)  # stage -> [start, end]

    @property
    def start(self) -> float:
        return min(s[0] for s in self.spans.values())

    @property
    def end(self) -> float:
        return max(s[1] for s in self.spans.values())


@dataclass
class StageStats:
    stage: str
    count: int
    median: float
    p90: float
    max: float
    total: float


@dataclass
class ReportData:
    """Everything the template needs except thumbnails (those stream from :mod:`.thumbs`)."""

    summary: dict
    rows: list[ImageRow]  # failed first (by stage, error type, name), then by name
    class_counts: dict[str, int]  # most frequent first
    class_ids: dict[str, int]  # label -> class id (for colours)
    failure_counts: list[tuple[str, str, int]]  # (stage, error type, images), most first
    durations: dict[str, list[float]]  # stage -> ms of every image that ran it
    stage_stats: list[StageStats]
    children: list[Child]  # by start time; empty when results carry no spans
    models: list[dict]  # distinct {"name", "precision", "weights_sha256"}
    params: list[dict]  # distinct {"score", "iou", "resize"}
    stragglers: list[tuple[ImageRow, float]]  # slowest images by summed stage time

    @property
    def failed_rows(self) -> list[ImageRow]:
        return [r for r in self.rows if r.failed]

    @property
    def counts(self) -> dict[str, Any]:
        s = self.summary
        failed = sum(1 for r in self.rows if r.failed)
        dup = s.get("duplicates") or []
        return {
            "submitted": s.get("submitted", len(self.rows)),
            "unique": s.get("unique", len(self.rows)),
            "succeeded": s.get("succeeded", len(self.rows) - failed),
            "failed": s.get("failed", failed),
            "duplicates": len(dup) if isinstance(dup, list) else int(dup or 0),
        }


def _boxes(result: Mapping) -> list[Box]:
    out = []
    for d in result.get("detections") or []:
        try:
            x1, y1, x2, y2 = (float(v) for v in d["box_norm"])
            out.append(Box(str(d["label"]), int(d["class_id"]), float(d["score"]),
                           (x1, y1, x2, y2)))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed detection is not drawn; the counts still come from summary
    out.sort(key=lambda b: -b.score)
    return out


def _row(entry: Mapping, result: Mapping | None) -> ImageRow:
    src = result or entry
    # the summary is this execution's word on the image (a result JSON may be another
    # execution's of the same batch id); the result fills in what the summary lacks
    first, second = (entry, src) if entry.get("status") else (src, entry)
    status = str(first.get("status") or ("missing" if result is None else "unknown"))
    error = next((e for e in (first.get("error"), second.get("error"))
                  if isinstance(e, dict)), None)
    if status != "succeeded" and error is None:
        error = {"stage": "unknown", "type": "MissingResult",
                 "message": "the summary lists this image but no result was found"}
    timings = {k: float(v) for k, v in (src.get("timings_ms") or {}).items()
               if k in IMAGE_STAGES and isinstance(v, int | float) and math.isfinite(v)}
    child = src.get("child") if isinstance(src.get("child"), dict) else None
    return ImageRow(
        image_id=str(src.get("image_id") or entry.get("image_id") or "?"),
        uri=str(src.get("uri") or entry.get("uri") or ""),
        status=status, error=error,
        width=src.get("width"), height=src.get("height"),
        boxes=_boxes(result) if result else [], timings_ms=timings,
        child=str(child["id"]) if child and "id" in child else None,
        local_path=entry.get("local_path") or src.get("local_path"),
    )


def _add_spans(children: dict[str, Child], result: Mapping, row: ImageRow) -> None:
    child = result.get("child")
    spans = result.get("spans_ms")
    if not isinstance(child, dict) or "id" not in child:
        return
    c = children.get(str(child["id"]))
    if c is None:
        c = children[str(child["id"])] = Child(str(child["id"]), int(child.get("size") or 0))
    c.images += 1
    c.failed += row.failed
    for stage, span in (spans or {}).items():
        if stage in IMAGE_STAGES and isinstance(span, list | tuple) and len(span) == 2:
            s, e = float(span[0]), float(span[1])
            old = c.spans.get(stage)
            c.spans[stage] = [min(s, old[0]), max(e, old[1])] if old else [s, e]


def _percentile(sorted_values: list[float], q: float) -> float:
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def _stage_stats(durations: dict[str, list[float]]) -> list[StageStats]:
    out = []
    for stage in IMAGE_STAGES:
        v = sorted(durations.get(stage, []))
        if v:
            out.append(StageStats(stage, len(v), _percentile(v, 0.5), _percentile(v, 0.9),
                                  v[-1], sum(v)))
    return out


def _add_distinct(seen: dict[tuple, dict], item: Any) -> None:
    """Keep one copy of each distinct non-empty dict (models, params: one or two per batch)."""
    if isinstance(item, Mapping) and item:
        seen.setdefault(tuple(sorted((str(k), str(v)) for k, v in item.items())), dict(item))


def _sort_key(row: ImageRow) -> tuple:
    if not row.failed:
        return (1, 0, "", row.name, row.image_id)
    stage = (row.error or {}).get("stage")
    order = FAILURE_STAGES.index(stage) if stage in FAILURE_STAGES else len(FAILURE_STAGES)
    return (0, order, str((row.error or {}).get("type")), row.name, row.image_id)


def build(summary: Mapping | None, results: Iterable[Mapping]) -> ReportData:
    """One pass over ``results``; see the module docstring for the shapes."""
    summary = dict(summary or {})
    extra_rows: list[ImageRow] = []
    entries = {str(e.get("image_id")): e for e in summary.get("images") or []
               if isinstance(e, dict)}
    rows: dict[str, ImageRow] = {}
    children: dict[str, Child] = {}
    models: dict[tuple, dict] = {}
    params: dict[tuple, dict] = {}
    class_ids: dict[str, int] = {}
    for result in results:
        if not isinstance(result, Mapping):
            continue
        iid = str(result.get("image_id"))
        row = _row(entries.get(iid, {}), result)
        if iid in entries:
            rows[iid] = row
        else:
            extra_rows.append(row)
        _add_spans(children, result, row)
        _add_distinct(models, result.get("model"))
        _add_distinct(params, result.get("params"))
        for b in row.boxes:
            class_ids.setdefault(b.label, b.class_id)
    for iid, entry in entries.items():
        if iid not in rows:
            rows[iid] = _row(entry, None)
    all_rows = sorted([*rows.values(), *extra_rows], key=_sort_key)

    counts = summary.get("class_counts")
    if not isinstance(counts, dict):
        counts = Counter(b.label for r in all_rows for b in r.boxes)
    class_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    fails = Counter((str(r.error.get("stage")), str(r.error.get("type")))
                    for r in all_rows if r.failed and r.error)
    durations: dict[str, list[float]] = defaultdict(list)
    for r in all_rows:
        for stage, ms in r.timings_ms.items():
            durations[stage].append(ms)
    totals = sorted(((r, sum(r.timings_ms.values())) for r in all_rows if r.timings_ms),
                    key=lambda rt: -rt[1])
    return ReportData(
        summary=summary, rows=all_rows, class_counts=class_counts, class_ids=class_ids,
        failure_counts=[(s, t, n) for (s, t), n in fails.most_common()],
        durations=dict(durations), stage_stats=_stage_stats(durations),
        children=sorted((c for c in children.values() if c.spans), key=lambda c: c.start),
        models=list(models.values()), params=list(params.values()), stragglers=totals[:5],
    )
