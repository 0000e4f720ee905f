"""The report of a local run (``yolo-sfn run --out DIR``): what the runner passes, or what
it left in ``DIR``.

``DIR`` holds ``summary.json``, ``results/<image_id>.json``, ``annotated/<name>.jpg`` and,
when the runner wrote them, ``cost.json`` and the engine notes. Links in the page are
relative to the report's folder, so ``DIR`` can be moved or zipped as a whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from yolo_sfn.errors import InputFileError
from yolo_sfn.report import data as report_data
from yolo_sfn.report.html import Link, Page, render
from yolo_sfn.report.thumbs import Source, Thumb

REPORT_NAME = "report.html"


def _rel(target: Path, base: Path) -> str:
    """A relative URL from ``base`` (a folder) to ``target``: '/'-separated and
    percent-encoded, so a file called ``a #1?.jpg`` is still a link to that file; a name
    that is not UTF-8 is encoded from its bytes (os.fsencode)."""
    return quote(os.fsencode(Path(os.path.relpath(target, base)).as_posix()), safe="/")


def write_report(
    path: Path,
    *,
    summary: Mapping,
    results: Iterable[Mapping],
    notes: Sequence[str] = (),
    cost: Mapping | None = None,
    annotated: Mapping[str, Path] | None = None,
    inputs: Mapping[str, Path] | None = None,
    results_dir: Path | None = None,
    execution: Mapping | None = None,
    title: str | None = None,
    thumb_workers: int = 4,
    thumbs: Mapping[str, Thumb] | None = None,
) -> Path:
    """Write the self-contained HTML report of one batch to ``path`` and return it.

    summary: the run's ``summary.json`` dict. results: the per-image result dicts (any
    iterable; read once). notes: the local engine notes. cost: ``cost.json``'s dict, if any.
    annotated: image_id -> annotated JPEG (linked, and the thumbnail when no input is given).
    inputs: image_id -> the input image file (thumbnail source; else ``summary.images[i]
    .local_path``). results_dir: where ``<image_id>.json`` lie (default: ``results/`` next to
    ``path``; linked when the file exists). execution: ``{"status", "start", "stop",
    "elapsed_s"}``. thumbs: image_id -> :class:`~yolo_sfn.report.thumbs.Thumb` the caller
    made already (:func:`~yolo_sfn.report.thumbs.thumb_of_pixels`); those images are not read
    or decoded again, the others (ids not in it, or mapped to None) get theirs from ``inputs``
    / ``annotated`` as above. Images that cannot be read get a placeholder instead of a
    thumbnail.
    """
    path = Path(path)
    base = path.parent
    results_dir = Path(results_dir) if results_dir is not None else base / "results"
    annotated = {k: Path(v) for k, v in (annotated or {}).items()}
    inputs = {k: Path(v) for k, v in (inputs or {}).items()}
    built = report_data.build(summary, results)

    def source(row: report_data.ImageRow) -> Source | None:
        clean = inputs.get(row.image_id) or (Path(row.local_path) if row.local_path else None)
        if clean is not None and clean.is_file():
            return Source(clean.read_bytes())
        drawn = annotated.get(row.image_id)
        if drawn is not None and drawn.is_file():
            return Source(drawn.read_bytes(), drawn=True)
        return None

    def links(row: report_data.ImageRow) -> list[Link]:
        out = []
        if row.image_id in annotated:
            out.append(Link("annotated image", _rel(annotated[row.image_id], base)))
        result = results_dir / f"{row.image_id}.json"
        if result.is_file():
            out.append(Link("result JSON", _rel(result, base)))
        return out

    batch = summary.get("batch_id") or "batch"
    page = Page(title=title or f"yolo-sfn report: {batch}", origin=f"local run {base}",
                source=source, links=links, notes=list(notes),
                cost=cost if isinstance(cost, Mapping) else None,
                execution=dict(execution) if execution else None, thumb_workers=thumb_workers,
                thumbs=dict(thumbs or {}))
    return render(path, built, page)


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _results_in(folder: Path) -> Iterator[dict]:
    for p in sorted(folder.glob("*.json")):
        doc = _read_json(p)
        if isinstance(doc, dict):
            yield doc


def annotated_by_name(summary: Mapping, folder: Path) -> dict[str, Path]:
    """image_id -> ``annotated/<stem>.jpg`` for the succeeded images whose URI's file stem is
    unique in the batch (the runner's naming; two inputs sharing a stem are not guessed)."""
    stems: dict[str, list[str]] = {}
    for img in summary.get("images") or []:
        if img.get("status") == "succeeded":
            stem = Path(str(img.get("uri", "")).rsplit("/", 1)[-1]).stem
            stems.setdefault(stem, []).append(str(img.get("image_id")))
    return {ids[0]: folder / f"{stem}.jpg" for stem, ids in stems.items()
            if len(ids) == 1 and (folder / f"{stem}.jpg").is_file()}


def report_from_dir(run_dir: Path, path: Path | None = None, **kwargs) -> Path:
    """Build ``run_dir/report.html`` (or ``path``) from what ``yolo-sfn run --out run_dir``
    left there: ``summary.json`` (with its ``local_engine_notes``), ``results/``,
    ``annotated/``, ``cost.json``."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    if not isinstance(summary, dict):
        raise InputFileError(f"{run_dir}: no readable summary.json (is it a `yolo-sfn run "
                             "--out` folder?)")
    cost = _read_json(run_dir / "cost.json")
    notes = summary.get("local_engine_notes")
    kwargs.setdefault("annotated", annotated_by_name(summary, run_dir / "annotated"))
    return write_report(
        Path(path) if path is not None else run_dir / REPORT_NAME, summary=summary,
        results=_results_in(run_dir / "results"), results_dir=run_dir / "results",
        cost=cost if isinstance(cost, dict) else None,
        notes=[str(n) for n in notes] if isinstance(notes, list) else [], **kwargs)
