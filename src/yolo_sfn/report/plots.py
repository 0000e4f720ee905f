"""The report's charts, drawn with matplotlib at build time and embedded as ``data:`` URIs.

Object-oriented matplotlib only (``Figure``, no ``pyplot``): no global figure state, no GUI
backend, safe to call from any thread. Charts are SVG with text left as text (small, sharp,
searchable); the per-child timeline switches to PNG when it has so many rows that SVG would
be heavier than the picture is worth.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from yolo_sfn.contract import IMAGE_STAGES
from yolo_sfn.core.annotate import class_color_rgb
from yolo_sfn.report.data import Child

STAGE_COLORS = {"preprocess": "#0082c8", "infer": "#e6194b", "postprocess": "#3cb44b",
                "store": "#f58230"}
MAX_CLASSES = 40  # bars in the class chart; the table below it lists every class
SVG_TIMELINE_ROWS = 300  # above this the timeline is a PNG
_RC = {"svg.fonttype": "none", "svg.hashsalt": "yolo-sfn-report", "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class Plot:
    data_uri: str
    alt: str  # what the chart says, for readers without images
    width: int  # CSS px
    height: int


def _encode(fig: Figure, fmt: str, alt: str) -> Plot:
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=110 if fmt == "png" else 72, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    w, h = fig.get_size_inches() * 72
    return Plot(f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}", alt,
                round(w), round(h))


def _figure(width_in: float, height_in: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width_in, height_in), layout="constrained")


def class_chart(class_counts: dict[str, int], class_ids: dict[str, int]) -> Plot | None:
    """Horizontal bars, most frequent class on top, each in its annotation colour."""
    items = list(class_counts.items())[:MAX_CLASSES]
    if not items:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(6.5, 0.6 + 0.24 * len(items))
        ax = fig.add_subplot()
        labels = [k for k, _ in items][::-1]
        values = [v for _, v in items][::-1]
        colors = [tuple(c / 255 for c in class_color_rgb(class_ids.get(k, i)))
                  for i, k in enumerate(labels)]
        bars = ax.barh(labels, values, color=colors)
        ax.bar_label(bars, padding=2, fontsize=8)
        ax.set_xlabel("detections")
        ax.margins(x=0.08)
    top = ", ".join(f"{k} {v}" for k, v in items[:10])
    return _encode(fig, "svg", f"Detections per class: {top}")


def duration_chart(durations: dict[str, list[float]]) -> Plot | None:
    """One histogram per stage (log-spaced bins), so a slow stage or a long tail shows."""
    import numpy as np

    stages = [s for s in IMAGE_STAGES if durations.get(s)]
    if not stages:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(6.5, 1.1 * len(stages) + 0.5)
        axes = fig.subplots(len(stages), 1, sharex=True, squeeze=False)[:, 0]
        lo = max(0.01, min(min(durations[s]) for s in stages))
        hi = max(lo * 10, max(max(durations[s]) for s in stages))
        bins = np.geomspace(lo, hi * 1.0001, 40)
        for ax, stage in zip(axes, stages, strict=True):
            v = np.clip(np.asarray(durations[stage], dtype=float), lo, None)
            ax.hist(v, bins=bins, color=STAGE_COLORS.get(stage, "#888"))
            ax.set_xscale("log")
            ax.set_ylabel(stage, rotation=0, ha="right", va="center")
            ax.axvline(float(np.median(v)), color="#222", lw=0.8, ls="--")
            ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        note = f"; under {lo:g} ms drawn at {lo:g}" if lo == 0.01 and any(
            min(durations[s]) < lo for s in stages) else ""
        axes[-1].set_xlabel(f"milliseconds per image (log scale; dashed: median{note})")
    return _encode(fig, "svg", "Per-stage duration histograms for " + ", ".join(stages))


def timeline_chart(children: list[Child]) -> Plot | None:
    """One row per Map child, a bar per stage from its start to its end (seconds since the
    first child started): stragglers stick out on the right, a slow stage by its colour."""
    if not children:
        return None
    t0 = min(c.start for c in children)
    n = len(children)
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, min(12.0, 1.4 + 0.16 * n))
        ax = fig.add_subplot()
        lw = max(0.5, min(8.0, 600 / n))
        for stage in IMAGE_STAGES:
            rows = [(i, c.spans[stage]) for i, c in enumerate(children) if stage in c.spans]
            if rows:
                ax.hlines([i for i, _ in rows], [(s - t0) / 1000 for _, (s, _e) in rows],
                          [(e - t0) / 1000 for _, (_s, e) in rows], colors=STAGE_COLORS[stage],
                          linewidth=lw, label=stage)
        ax.set_ylim(n - 0.5, -0.5)
        if n <= 40:
            ax.set_yticks(range(n), [c.id for c in children], fontsize=7)
        else:
            ax.set_ylabel(f"{n} children, by start time")
        ax.set_xlabel("seconds since the first child started")
        fig.legend(loc="outside upper center", fontsize=8, ncols=len(IMAGE_STAGES), frameon=False)
    fmt = "svg" if n <= SVG_TIMELINE_ROWS else "png"
    return _encode(fig, fmt, f"Timeline of {n} Map children, each stage's start and end")
