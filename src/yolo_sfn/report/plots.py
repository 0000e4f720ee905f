"""The report's charts, drawn with matplotlib at build time and embedded as ``data:`` URIs.

Object-oriented matplotlib only (``Figure``, no ``pyplot``): no global figure state, no GUI
backend, safe to call from any thread. Charts are SVG with text left as text (small, sharp,
searchable); the per-child timeline switches to PNG when it has so many rows that SVG would
be heavier than the picture is worth.

Cheap by construction (a chart costs tens of ms, not hundreds): margins are fixed, in inches,
from the measured width of the longest label (no constrained layout, no ``bbox_inches=
"tight"``: both lay the figure out twice or more); one artist per series (``stairs``,
``hlines``), never one patch per bin; log axes without minor ticks, labelled ``0.1, 1, 10``
in plain text (matplotlib's default ``10^{-1}`` labels go through its mathtext parser).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from yolo_sfn.contract import IMAGE_STAGES
from yolo_sfn.core.annotate import class_color_rgb
from yolo_sfn.report.data import Child

STAGE_COLORS = {"preprocess": "#0082c8", "infer": "#e6194b", "postprocess": "#3cb44b",
                "store": "#f58230"}
MAX_CLASSES = 40  # bars in the class chart; the table below it lists every class
SVG_TIMELINE_ROWS = 300  # above this the timeline is a PNG
FONT_SIZE = 9  # pt
_RC = {"svg.fonttype": "none", "svg.hashsalt": "yolo-sfn-report", "font.size": FONT_SIZE,
       "axes.spines.top": False, "axes.spines.right": False,
       # written into every <text> of the SVG: the default list of 14 fonts is ~200 bytes each
       "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"]}
PAD_IN = 0.12  # figure edge to the outermost text, and tick label to axis label, inches
TICK_IN = 0.1  # tick mark + its pad, inches
LINE_IN = 0.2  # one line of 9 pt text, inches


@dataclass(frozen=True)
class Plot:
    data_uri: str
    alt: str  # what the chart says, for readers without images
    width: int  # CSS px
    height: int


def text_width_in(texts, size: float = FONT_SIZE) -> float:
    """Width of the widest of ``texts`` in inches, in matplotlib's default font at ``size`` pt
    (what its renderers measure; a browser showing the SVG's text differs by a few %)."""
    font = get_font(findfont(FontProperties(family=_RC["font.sans-serif"], size=size)))
    font.set_size(size, 72)
    widest = 0.0
    for t in texts:
        font.set_text(str(t), 0.0)
        widest = max(widest, font.get_width_height()[0] / 64)
    return widest / 72


def _encode(fig: Figure, fmt: str, alt: str) -> Plot:
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=110 if fmt == "png" else 72,
                    metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    w, h = fig.get_size_inches() * 72
    return Plot(f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}", alt,
                round(w), round(h))


def _figure(width_in: float, height_in: float, *, left: float, right: float = PAD_IN,
            top: float = PAD_IN, bottom: float = PAD_IN, hspace: float = 0.2) -> Figure:
    """A figure whose axes area is inset by fixed margins (inches)."""
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(left=left / width_in, right=1 - right / width_in,
                        top=1 - top / height_in, bottom=bottom / height_in, hspace=hspace)
    return fig


def class_chart(class_counts: dict[str, int], class_ids: dict[str, int]) -> Plot | None:
    """Horizontal bars, most frequent class on top, each in its annotation colour."""
    items = list(class_counts.items())[:MAX_CLASSES]
    if not items:
        return None
    labels = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    with matplotlib.rc_context(_RC):
        fig = _figure(6.5, 0.6 + 0.24 * len(items), left=PAD_IN + TICK_IN + text_width_in(
            labels), right=PAD_IN + text_width_in([max(values)], 8), top=0.05,
            bottom=PAD_IN + 2 * LINE_IN + TICK_IN)
        ax = fig.add_subplot()
        colors = [tuple(c / 255 for c in class_color_rgb(class_ids.get(k, i)))
                  for i, k in enumerate(labels)]
        bars = ax.barh(labels, values, color=colors)
        ax.bar_label(bars, padding=2, fontsize=8)
        ax.set_xlabel("detections")
        ax.set_ylim(-0.6, len(items) - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    top = ", ".join(f"{k} {v}" for k, v in items[:10])
    return _encode(fig, "svg", f"Detections per class: {top}")


def _ms(v: float, _pos=None) -> str:
    return f"{v:,g}"


def duration_chart(durations: dict[str, list[float]]) -> Plot | None:
    """One histogram per stage (log-spaced bins, a shared log axis in ms), so a slow stage or
    a long tail shows; a dashed line at each stage's median."""
    stages = [s for s in IMAGE_STAGES if durations.get(s)]
    if not stages:
        return None
    lo = max(0.01, min(min(durations[s]) for s in stages))
    hi = max(lo * 10, max(max(durations[s]) for s in stages))
    bins = np.geomspace(lo, hi * 1.0001, 40)
    values = {s: np.clip(np.asarray(durations[s], dtype=float), lo, None) for s in stages}
    counts = {s: np.histogram(v, bins)[0] for s, v in values.items()}
    note = f"; under {lo:g} ms drawn at {lo:g}" if lo == 0.01 and any(
        min(durations[s]) < lo for s in stages) else ""
    xlabel = f"milliseconds per image (log scale; dashed: median{note})"
    peak = max(int(c.max()) for c in counts.values())
    left = PAD_IN + text_width_in(stages) + 0.1 + text_width_in([2 * peak]) + TICK_IN
    width = max(6.5, left + text_width_in([xlabel]) + PAD_IN)
    with matplotlib.rc_context(_RC):
        fig = _figure(width, 1.1 * len(stages) + 0.5, left=left, top=0.1,
                      bottom=PAD_IN + 2 * LINE_IN + TICK_IN, hspace=0.25)
        axes = fig.subplots(len(stages), 1, sharex=True, squeeze=False)[:, 0]
        for ax, stage in zip(axes, stages, strict=True):
            ax.stairs(counts[stage], bins, fill=True, color=STAGE_COLORS.get(stage, "#888"))
            ax.set_xscale("log")
            ax.set_ylabel(stage, rotation=0, ha="right", va="center")
            ax.axvline(float(np.median(values[stage])), color="#222", lw=0.8, ls="--")
            ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
            ax.set_ylim(0, None)
            if ax is not axes[-1]:  # the shared x axis is drawn once, at the bottom
                ax.xaxis.set_visible(False)
        ax = axes[-1]  # shared: one locator and formatter for all
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(_ms))
        ax.set_xlabel(xlabel, loc="left")
    return _encode(fig, "svg", "Per-stage duration histograms for " + ", ".join(stages))


def timeline_chart(children: list[Child]) -> Plot | None:
    """One row per Map child, a bar per stage from its start to its end (seconds since the
    first child started): stragglers stick out on the right, a slow stage by its colour."""
    if not children:
        return None
    t0 = min(c.start for c in children)
    n = len(children)
    named = n <= 40
    left = PAD_IN + TICK_IN + (text_width_in([c.id for c in children], 7) if named
                               else LINE_IN + 0.06 + text_width_in([n]))  # label, numbers
    with matplotlib.rc_context(_RC):
        fig = _figure(7.5, min(12.0, 1.4 + 0.16 * n), left=left, top=PAD_IN + LINE_IN + 0.1,
                      bottom=PAD_IN + 2 * LINE_IN + TICK_IN)
        ax = fig.add_subplot()
        lw = max(0.5, min(8.0, 600 / n))
        for stage in IMAGE_STAGES:
            rows = [(i, c.spans[stage]) for i, c in enumerate(children) if stage in c.spans]
            if rows:
                ax.hlines([i for i, _ in rows], [(s - t0) / 1000 for _, (s, _e) in rows],
                          [(e - t0) / 1000 for _, (_s, e) in rows], colors=STAGE_COLORS[stage],
                          linewidth=lw, label=stage)
        ax.set_ylim(n - 0.5, -0.5)
        if named:
            ax.set_yticks(range(n), [c.id for c in children], fontsize=7)
        else:
            ax.set_ylabel(f"{n} children, by start time")
            ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.set_xlabel("seconds since the first child started")
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 1 - 0.04 / fig.get_figheight()),
                   fontsize=8, ncols=len(IMAGE_STAGES), frameon=False)
    fmt = "svg" if n <= SVG_TIMELINE_ROWS else "png"
    return _encode(fig, fmt, f"Timeline of {n} Map children, each stage's start and end")
