"""Render :class:`~yolo_sfn.report.data.ReportData` + thumbnails into one HTML file.

The page comes from ``templates/report.html.j2`` (Jinja2, autoescape on: file names, URIs and
error messages are user data). It is streamed to disk chunk by chunk while the thumbnails are
made, so the page for 10,000 images is never held in memory. Everything it shows is inside
the file (``data:`` URIs) and a Content-Security-Policy forbids any fetch, so it opens from
disk with no network; links to annotated images and result JSONs are plain ``<a href>``.
Filtering by class and status is CSS (radio buttons placed before the grid and ``~`` rules),
so it works with JavaScript off; a few lines of script only count what is shown. (Not
``:has()``: Chromium then restyles the whole grid for every card it parses, and a
10,000-image page took 8x longer to open.)
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from yolo_sfn.core.annotate import class_color_rgb
from yolo_sfn.report import plots
from yolo_sfn.report.data import MAX_TAGGED, ImageRow, ReportData
from yolo_sfn.report.thumbs import Source, Thumb, stream_thumbs

TAG_FONT = 10  # px, in thumbnail pixels


@dataclass
class Link:
    text: str
    href: str


@dataclass
class Page:
    """What differs between a local run and a deployed execution."""

    title: str
    origin: str  # "local run out/demo" / "execution arn:..."
    source: Callable[[ImageRow], Source | None]  # thumbnail bytes for an image
    links: Callable[[ImageRow], list[Link]]  # full annotated image, result JSON, ...
    notes: Iterable[str] = field(default_factory=list)  # iterated after the grid is made
    notes_title: str = "Local engine notes"
    notes_intro: str = "Where this run differs from AWS."
    cost: dict | None = None
    execution: dict | None = None  # {"status", "start", "stop", "elapsed_s"}
    thumb_workers: int = 4
    thumbs: Mapping[str, Thumb] = field(default_factory=dict)  # image_id -> made already


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _ink(rgb: tuple[int, int, int]) -> str:
    return "#000" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "#fff"


def _overlay(row: ImageRow, thumb: Thumb) -> Markup:
    """The SVG elements over a thumbnail, in its pixels: a rectangle per box (unless the boxes
    are drawn in the pixels already: then only the readable tags), and a ``label score`` tag
    for the best ``MAX_TAGGED``; the lowest score is drawn first, the best tag on top.

    Built here with f-strings rather than in the template: boxes are most of a big page's
    markup, and Jinja2 spends ~1 us on each piece it outputs (bench/report_10k.py with
    thumbnails given: 4.6 s -> 3.6 s)."""
    w, h = thumb.width, thumb.height
    rects: list[str] = []
    tags: list[str] = []
    for i in reversed(range(len(row.boxes))):
        b = row.boxes[i]
        x1, y1, x2, y2 = b.box_norm
        rgb = class_color_rgb(b.class_id)
        color = _hex(rgb)
        x, y = round(x1 * w, 1), round(y1 * h, 1)
        if not thumb.drawn:
            rects.append(f'<rect x="{x}" y="{y}" width="{round(max(0.0, x2 - x1) * w, 1)}" '
                         f'height="{round(max(0.0, y2 - y1) * h, 1)}" fill="none" '
                         f'stroke="{color}" stroke-width="1.6"/>')
        if i < MAX_TAGGED:
            text = f"{b.label} {b.score:.2f}"
            tw = round(0.58 * TAG_FONT * len(text) + 4, 1)
            tx = round(min(max(0.0, x), max(0.0, w - tw)), 1)
            ty = round(y - TAG_FONT - 3 if y >= TAG_FONT + 3 else y, 1)
            tags.append(f'<rect x="{tx}" y="{ty}" width="{tw}" height="{TAG_FONT + 3}" '
                        f'fill="{color}"/><text x="{round(tx + 2, 1)}" '
                        f'y="{round(ty + TAG_FONT, 1)}" font-size="{TAG_FONT}" '
                        f'font-family="DejaVu Sans, Arial, sans-serif" '
                        f'fill="{_ink(rgb)}">{escape(text)}</text>')
    return Markup("".join(rects) + "".join(tags))


@dataclass(slots=True)
class Card:
    """One image's card, as the template reads it."""

    row: ImageRow
    thumb: Thumb | None
    classes: str  # CSS classes: status and detected classes, for the filters
    links: list[Link]
    overlay: Markup  # SVG elements over the thumbnail (see _overlay)


def _card(row: ImageRow, thumb: Thumb | None, tokens: dict[str, str], links) -> Card:
    kinds = ["s-ok" if not row.failed else "s-failed"]
    kinds += [tokens[lb] for lb in row.labels if lb in tokens] or ["k-none"]
    return Card(row, thumb, " ".join(kinds), links(row),
                _overlay(row, thumb) if thumb is not None else Markup(""))


def _cards(data: ReportData, page: Page, tokens: dict[str, str]) -> Iterator[Card]:
    """One card per row, in order; a thumbnail from ``page.thumbs`` where it has one, else
    made from ``page.source`` in the worker threads (only those rows go to them)."""
    given = page.thumbs
    made = stream_thumbs((r for r in data.rows if given.get(r.image_id) is None),
                         page.source, workers=page.thumb_workers)
    for row in data.rows:
        thumb = given.get(row.image_id)
        if thumb is None:
            _, thumb = next(made)
        yield _card(row, thumb, tokens, page.links)


def _usd(v: float | None) -> str:
    """$1,234.50, $0.1417, $0.000024: cents for dollars, two significant digits below."""
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return "-"
    if v >= 1 or v == 0:
        return f"${v:,.2f}"
    return f"${v:.{max(4, 1 - math.floor(math.log10(v)))}f}"


@functools.cache
def _env() -> jinja2.Environment:
    """One environment per process: it keeps the compiled template (compiling it is ~50 ms)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("yolo_sfn.report", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["ms"] = lambda v: "-" if v is None else (
        f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
    env.filters["usd"] = _usd
    return env


def _cost(cost: Mapping | None) -> dict | None:
    """``cost.json`` as the template reads it, or None when it has no ``usd`` breakdown."""
    if not isinstance(cost, Mapping) or not isinstance(cost.get("usd"), Mapping):
        return None
    notes = cost.get("notes")
    return {**cost, "counts": cost["counts"] if isinstance(cost.get("counts"), dict) else {},
            "notes": [str(n) for n in notes] if isinstance(notes, list) else []}


def context(data: ReportData, page: Page) -> dict[str, Any]:
    """Everything the template reads (the cards are a generator: thumbnails stream)."""
    classes = []
    tokens: dict[str, str] = {}
    for i, (label, n) in enumerate(data.class_counts.items()):
        tokens[label] = f"k{i}"
        rgb = class_color_rgb(data.class_ids.get(label, i))
        classes.append({"label": label, "count": n, "token": f"k{i}", "color": _hex(rgb)})
    counts = data.counts
    filter_opts = [
        {"group": "status", "id": "st-all", "text": f"all {len(data.rows)}", "checked": True},
        {"group": "status", "id": "st-ok", "text": f"succeeded {counts['succeeded']}",
         "card_class": "s-ok"},
        {"group": "status", "id": "st-failed", "text": f"failed {counts['failed']}",
         "card_class": "s-failed"},
        {"group": "class", "id": "k-all", "text": "any", "checked": True},
        {"group": "class", "id": "k-none", "text": "no detections", "card_class": "k-none"},
        *({"group": "class", "id": c["token"], "text": f"{c['label']} {c['count']}",
           "card_class": c["token"], "color": c["color"]} for c in classes)]
    stage_fail = {}
    type_fail = {}
    for stage, etype, n in data.failure_counts:
        stage_fail[stage] = stage_fail.get(stage, 0) + n
        type_fail[etype] = type_fail.get(etype, 0) + n
    s = data.summary
    return {
        "title": page.title, "origin": page.origin,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "batch_id": s.get("batch_id"), "execution_arn": s.get("execution_arn"),
        "counts": counts, "filter_opts": filter_opts,
        "duplicates": list(s.get("duplicates") or [])[:200],
        "models": data.models, "params": data.params, "execution": page.execution,
        "cost": _cost(page.cost), "classes": classes, "failures": data.failed_rows,
        "failure_counts": data.failure_counts, "stage_fail": stage_fail, "type_fail": type_fail,
        "stage_stats": data.stage_stats, "stragglers": data.stragglers,
        "children": data.children, "notes": page.notes, "notes_title": page.notes_title,
        "notes_intro": page.notes_intro,
        "class_chart": plots.class_chart(data.class_counts, data.class_ids),
        "duration_chart": plots.duration_chart(data.durations),
        "timeline_chart": plots.timeline_chart(data.children),
        "slowest_child": max(data.children, key=lambda c: c.end - c.start, default=None),
        "n_images": len(data.rows), "cards": _cards(data, page, tokens),
    }


def render(path: Path, data: ReportData, page: Page) -> Path:
    """Write the page to ``path`` (via a temporary file, so a failed build leaves no half
    page) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    template = _env().get_template("report.html.j2")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for chunk in template.generate(**context(data, page)):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
