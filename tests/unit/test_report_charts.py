"""The report's charts are laid out with fixed margins (no tight bbox, no constrained layout):
every label they draw must still fall inside the picture, with plain-text tick labels."""

from __future__ import annotations

import base64
import html
import random
import re

import pytest

pytest.importorskip("matplotlib")

from yolo_sfn.report import plots
from yolo_sfn.report.data import Child

TEXT = re.compile(r'<text style="[^"]*?font-size: ([\d.]+)px[^"]*?text-anchor: (\w+)"'
                  r' x="([-\d.]+)" y="[-\d.]+" transform="rotate\(([-\d.]+) [^"]*"'
                  r'>([^<]*)</text>')


def _svg(plot: plots.Plot) -> str:
    assert plot.data_uri.startswith("data:image/svg+xml;base64,")
    return base64.b64decode(plot.data_uri.split(",", 1)[1]).decode()


def _texts(svg: str) -> list[tuple[str, float, float]]:
    """(text, left x, right x) of every text, in SVG px (= pt at 72 dpi); a text turned by
    90 degrees spans its line height, from the ascent left of x to the descent right of it."""
    out = []
    for size, anchor, x, angle, text in TEXT.findall(svg):
        text, x, size = html.unescape(text), float(x), float(size)
        if abs(float(angle)) == 90:
            out.append((text, x - size, x + 0.3 * size))
            continue
        w = plots.text_width_in([text], size) * 72
        left = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        out.append((text, left, left + w))
    return out


def _inside(plot: plots.Plot) -> list[str]:
    svg = _svg(plot)
    width = float(re.search(r'<svg [^>]*width="([\d.]+)pt"', svg).group(1))
    texts = _texts(svg)
    assert texts
    return [f"{t!r} spans {a:.1f}..{b:.1f} of 0..{width:.1f}" for t, a, b in texts
            if a < 0 or b > width + 0.5]


def test_duration_chart_labels_fit_and_ticks_are_plain_numbers():
    rnd = random.Random(0)
    durations = {"preprocess": [rnd.lognormvariate(3, 1) for _ in range(20_000)],
                 "infer": [rnd.lognormvariate(6, 0.3) for _ in range(20_000)],
                 "postprocess": [rnd.lognormvariate(0, 1) for _ in range(19_000)] + [0.0] * 50,
                 "store": [2.0] * 20_000}  # one bin with 20,000 images: wide tick labels
    plot = plots.duration_chart(durations)
    assert _inside(plot) == []
    texts = [t for t, _, _ in _texts(_svg(plot))]
    for stage in durations:
        assert stage in texts
    assert {"0.01", "1", "100"} <= set(texts)  # ms on a log axis, no 10^x mathtext
    assert max(int(t) for t in texts if t.isdigit()) >= 10_000  # the store row's counts
    assert any("under 0.01 ms drawn at 0.01" in t for t in texts)
    assert plot.alt.startswith("Per-stage duration histograms for preprocess")


def test_class_chart_labels_fit_however_long():
    counts = {"a rather long class name here": 12_345, "dog": 40, "x": 1}
    plot = plots.class_chart(counts, {"dog": 16})
    assert _inside(plot) == []
    texts = [t for t, _, _ in _texts(_svg(plot))]
    assert {"a rather long class name here", "dog", "x", "12345", "40", "1"} <= set(texts)
    assert plots.class_chart({}, {}) is None


def _children(n: int) -> list[Child]:
    t0 = 1_700_000_000_000.0
    return [Child(f"child-{i:04d}-{'ab' * 8}", 4, 4, 0,
                  {"preprocess": [t0 + 10 * i, t0 + 10 * i + 200],
                   "infer": [t0 + 10 * i + 200, t0 + 10 * i + 1500]}) for i in range(n)]


@pytest.mark.parametrize("n", [1, 40, 41])
def test_timeline_labels_and_legend_fit(n):
    plot = plots.timeline_chart(_children(n))
    assert _inside(plot) == []
    texts = [t for t, _, _ in _texts(_svg(plot))]
    assert {"preprocess", "infer"} <= set(texts)  # the legend: the stages drawn
    assert ("child-0000-" + "ab" * 8 in texts) == (n <= 40)  # named rows up to 40
    assert (f"{n} children, by start time" in texts) == (n > 40)


def test_timeline_is_a_png_when_svg_would_be_heavy():
    plot = plots.timeline_chart(_children(plots.SVG_TIMELINE_ROWS + 1))
    assert plot.data_uri.startswith("data:image/png;base64,")
    assert plots.timeline_chart([]) is None
