"""A self-contained HTML report of one batch: what failed and why, what was found, where the
time went. One file, no network, readable with JavaScript off.

* :func:`write_report` - the page for a local run, from what the runner holds;
* :func:`report_from_dir` - the same from a ``yolo-sfn run --out DIR`` folder;
* :func:`report_for_execution` - the same for a deployed execution, from what it stored in S3.

Modules: :mod:`.data` (pure: summary + results -> what the page shows), :mod:`.plots`
(matplotlib charts), :mod:`.thumbs` (thumbnails, streamed; :func:`.thumbs.thumb_of_pixels`
for a caller that holds the pixels), :mod:`.html` (Jinja2 template, streamed to disk),
:mod:`.local` and :mod:`.remote` (where the data comes from).
Needs ``jinja2`` and ``matplotlib`` (the ``local`` extra). They are imported on first use of
the names above (~0.5 s), not by ``import yolo_sfn.report.thumbs`` (numpy and OpenCV only).
"""

from __future__ import annotations

import importlib

_WHERE = {"REPORT_NAME": "local", "report_from_dir": "local", "write_report": "local"}


def report_for_execution(*args, **kwargs):
    """See :func:`yolo_sfn.report.remote.report_for_execution` (imported on use: boto3)."""
    from yolo_sfn.report.remote import report_for_execution as build

    return build(*args, **kwargs)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["REPORT_NAME", "report_for_execution", "report_from_dir", "write_report"]
