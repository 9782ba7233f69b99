"""Inline SVG charts for the report, drawn from data: no library, no script, no network.

Every chart is an `<svg role="img">` with a title, scales with its container (viewBox), and is
readable without colour: series differ by dash and marker shape (lines) or by fill pattern (bars),
and carry text labels. Text is escaped here; the result is `Markup` for the templates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

__all__ = ["ForestRow", "Series", "bins", "forest", "hbars", "histogram", "line_chart", "pattern_defs", "stacked_columns"]

# Okabe-Ito: told apart by people with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#666666", "#000000")
DASHES = ("", "7 4", "2 3", "9 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")
# Fill patterns drawn over each palette colour, so bars differ in print and in grey too.
_PATTERNS = ("", '<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="#fff" stroke-width="1.4"/>',
             '<circle cx="3" cy="3" r="1.3" fill="#fff"/>', '<path d="M0,3 h6 M3,0 v6" stroke="#fff" stroke-width="1.2"/>',
             '<path d="M0,1.5 h6 M0,4.5 h6" stroke="#fff" stroke-width="1"/>', '<path d="M-1,5 l2,2 M0,0 l6,6 M5,-1 l2,2" stroke="#fff" stroke-width="1.4"/>',
             '<path d="M1.5,0 v6 M4.5,0 v6" stroke="#fff" stroke-width="1"/>', '<circle cx="3" cy="3" r="2" fill="none" stroke="#fff"/>')

W, H = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 16, 44

Fmt = Callable[[float], str]


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def fill(i: int) -> str:
    """The fill of series i: its colour with its pattern."""
    return f"url(#lk-fill{i % len(PALETTE)})"


def pattern_defs() -> Markup:
    """The patterns every bar chart refers to; included once per page."""
    parts = ['<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false"><defs>']
    for i, colour in enumerate(PALETTE):
        parts.append(f'<pattern id="lk-fill{i}" width="6" height="6" patternUnits="userSpaceOnUse">'
                     f'<rect width="6" height="6" fill="{colour}"/>{_PATTERNS[i]}</pattern>')
    parts.append("</defs></svg>")
    return Markup("".join(parts))


def _open(title: str, width: int = W, height: int = H) -> list[str]:
    return [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" preserveAspectRatio="xMinYMin meet" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']


def _close(parts: list[str]) -> Markup:
    parts.append("</svg>")
    return Markup("".join(parts))


def _text(x: float, y: float, text: str, *, anchor: str = "start", cls: str = "", extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{c}{extra}>{escape(text)}</text>'


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "square":
        return f'<rect x="{_num(x - 3.5)}" y="{_num(y - 3.5)}" width="7" height="7" fill="{colour}"/>'
    if kind == "triangle":
        return f'<path d="M{_num(x)},{_num(y - 4.5)} l4.5,8 h-9 z" fill="{colour}"/>'
    if kind == "diamond":
        return f'<path d="M{_num(x)},{_num(y - 5)} l5,5 l-5,5 l-5,-5 z" fill="{colour}"/>'
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="4" fill="{colour}"/>'


@dataclass
class Series:
    """One line: (x, y) points (a None y leaves a gap) and, optionally, a band (x, low, high) around it."""

    name: str
    points: list[tuple[float, float | None]]
    band: list[tuple[float, float, float]] = field(default_factory=list)


def line_chart(title: str, series: Sequence[Series], *, x_label: str, y_label: str, y_fmt: Fmt = _num, x_fmt: Fmt = _num,
               y_range: tuple[float, float] | None = None, log_y: bool = False,
               hlines: Sequence[tuple[float, str]] = (), vline: tuple[float, str] | None = None) -> Markup:
    """Lines over a numeric x axis; `hlines` are labelled reference lines (a threshold), `vline` marks an x (a stop)."""
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points if y is not None] + [v for v, _ in hlines]
    ys += [v for s in series for _, lo, hi in s.band for v in (lo, hi)]
    tf = (lambda v: math.log10(max(v, 1e-12))) if log_y else (lambda v: v)
    if y_range is not None:
        y0, y1 = y_range
    elif log_y:
        y0, y1 = min([0.1] + ys), max([10.0] + ys)
    else:
        y0, y1 = min([0.0] + ys), max([1.0] + ys)
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    t0, t1 = tf(y0), tf(y1)
    if t1 == t0:
        t1 = t0 + 1
    top = PAD_T + 18  # room for the legend above the plot
    pw, ph = W - PAD_L - PAD_R, H - top - PAD_B

    def px(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (tf(y) - t0) / (t1 - t0) * ph

    parts = _open(title)
    yt = [10.0 ** k for k in range(math.floor(t0), math.ceil(t1) + 1)] if log_y else nice_ticks(y0, y1)
    for v in yt:
        if y0 - 1e-12 <= v <= y1 + 1e-12:
            parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{_num(py(v))}" y2="{_num(py(v))}"/>')
            parts.append(_text(PAD_L - 6, py(v) + 4, y_fmt(v), anchor="end", cls="tick"))
    xt = sorted({float(x) for x in xs}) if len(set(xs)) <= 12 else nice_ticks(x0, x1, 8)
    for v in xt:
        if x0 <= v <= x1:
            parts.append(_text(px(v), H - PAD_B + 16, x_fmt(v), anchor="middle", cls="tick"))
    parts.append(f'<line class="axis" x1="{PAD_L}" x2="{W - PAD_R}" y1="{top + ph}" y2="{top + ph}"/>')
    parts.append(_text(PAD_L + pw / 2, H - 6, x_label, anchor="middle", cls="label"))
    parts.append(_text(14, top + ph / 2, y_label, anchor="middle", cls="label",
                       extra=f' transform="rotate(-90 14 {_num(top + ph / 2)})"'))
    for value, label in hlines:
        parts.append(f'<line class="ref" x1="{PAD_L}" x2="{W - PAD_R}" y1="{_num(py(value))}" y2="{_num(py(value))}"/>')
        parts.append(_text(PAD_L + 6, py(value) - 5, label, cls="ref-label"))
    if vline is not None:
        x, label = vline
        right = px(x) > PAD_L + pw * 0.6  # write the label on the side with room, at the foot of the line
        parts.append(f'<line class="ref" x1="{_num(px(x))}" x2="{_num(px(x))}" y1="{top}" y2="{top + ph}"/>')
        parts.append(_text(px(x) - 4 if right else px(x) + 4, top + ph - 6, label, anchor="end" if right else "start",
                           cls="ref-label"))
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if s.band:
            upper = " ".join(f"{_num(px(x))},{_num(py(hi))}" for x, _, hi in s.band)
            lower = " ".join(f"{_num(px(x))},{_num(py(lo))}" for x, lo, _ in reversed(s.band))
            parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{colour}"/>')
        runs: list[list[str]] = [[]]
        for x, y in s.points:
            if y is None:
                runs.append([])
            else:
                runs[-1].append(f"{_num(px(x))},{_num(py(y))}")
        dash = f' stroke-dasharray="{DASHES[i % len(DASHES)]}"' if DASHES[i % len(DASHES)] else ""
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="line" points="{" ".join(run)}" stroke="{colour}"{dash}/>')
        if len(s.points) <= 40:
            parts += [_marker(MARKERS[i % len(MARKERS)], px(x), py(y), colour) for x, y in s.points if y is not None]
    parts += _legend([s.name for s in series], lines=True, y=PAD_T - 2)
    return _close(parts)


def _legend(names: Sequence[str], *, lines: bool, y: float = PAD_T + 2) -> list[str]:
    """Names at the top right, each with its line style or fill."""
    out, x = [], float(PAD_L + 8)
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        if lines:
            dash = f' stroke-dasharray="{DASHES[i % len(DASHES)]}"' if DASHES[i % len(DASHES)] else ""
            out.append(f'<line x1="{_num(x)}" x2="{_num(x + 22)}" y1="{_num(y)}" y2="{_num(y)}" stroke="{colour}" '
                       f'stroke-width="2"{dash}/>')
            out.append(_marker(MARKERS[i % len(MARKERS)], x + 11, y, colour))
        else:
            out.append(f'<rect x="{_num(x)}" y="{_num(y - 6)}" width="16" height="12" fill="{fill(i)}" stroke="#333" stroke-width=".5"/>')
        out.append(_text(x + 28, y + 4, name, cls="legend"))
        x += 40 + 7 * len(name)
    return out


def hbars(title: str, rows: Sequence[tuple[str, float]], *, fmt: Fmt) -> Markup:
    """Horizontal bars, one per labelled value, the value written at the bar's end."""
    bar, gap, label_w = 22, 8, 200
    height = PAD_T + len(rows) * (bar + gap) + 8
    top = max([v for _, v in rows] + [1e-12])
    width = W - label_w - 110
    parts = _open(title, W, max(height, 40))
    for i, (label, value) in enumerate(rows):
        y = PAD_T + i * (bar + gap)
        w = max(0.0, value) / top * width
        parts.append(_text(label_w - 8, y + bar / 2 + 4, _clip(label, 30), anchor="end", cls="tick"))
        parts.append(f'<rect x="{label_w}" y="{y}" width="{_num(max(w, 1))}" height="{bar}" fill="{fill(i)}"/>')
        parts.append(_text(label_w + w + 6, y + bar / 2 + 4, fmt(value), cls="value"))
    return _close(parts)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def bins(values: Sequence[float], count: int = 12) -> list[tuple[float, float, int]]:
    """Equal-width bins (low, high, count) over the values' range."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [(lo, hi, len(values))]
    step = (hi - lo) / count
    counts = [0] * count
    for v in values:
        counts[min(count - 1, int((v - lo) / step))] += 1
    return [(lo + k * step, lo + (k + 1) * step, n) for k, n in enumerate(counts)]


def histogram(title: str, values: Sequence[float], *, x_label: str, x_fmt: Fmt, marks: Sequence[tuple[float, str]] = (),
              count: int = 12) -> Markup:
    """Columns of how many values fall in each equal-width bin; `marks` label positions (p50, p95)."""
    groups = bins(values, count)
    parts = _open(title)
    if not groups:
        parts.append(_text(W / 2, H / 2, "no data", anchor="middle", cls="label"))
        return _close(parts)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    top = max(n for _, _, n in groups)
    lo, hi = groups[0][0], groups[-1][1]
    span = (hi - lo) or 1.0
    colw = pw / len(groups)
    for v in nice_ticks(0, top, 4):
        if v <= top and v == int(v):
            y = PAD_T + ph - v / top * ph
            parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{_num(y)}" y2="{_num(y)}"/>')
            parts.append(_text(PAD_L - 6, y + 4, f"{int(v)}", anchor="end", cls="tick"))
    for k, (a, b, n) in enumerate(groups):
        h = n / top * ph
        x = PAD_L + k * colw
        parts.append(f'<rect x="{_num(x + 1)}" y="{_num(PAD_T + ph - h)}" width="{_num(colw - 2)}" height="{_num(h)}" '
                     f'fill="{fill(0)}"><title>{escape(f"{x_fmt(a)} – {x_fmt(b)}: {n}")}</title></rect>')
    for v in (lo, lo + span / 2, hi):
        parts.append(_text(PAD_L + (v - lo) / span * pw, H - PAD_B + 16, x_fmt(v), anchor="middle", cls="tick"))
    for i, (v, label) in enumerate(marks):
        x = PAD_L + (v - lo) / span * pw
        right = x > PAD_L + pw * 0.7  # label on the line's left near the right edge, so it is not cut off
        parts.append(f'<line class="ref" x1="{_num(x)}" x2="{_num(x)}" y1="{PAD_T}" y2="{PAD_T + ph}"/>')
        parts.append(_text(x - 4 if right else x + 4, PAD_T + 12 + 14 * i, f"{label} {x_fmt(v)}", anchor="end" if right else "start",
                           cls="ref-label"))
    parts.append(_text(PAD_L + pw / 2, H - 6, x_label, anchor="middle", cls="label"))
    parts.append(_text(14, PAD_T + ph / 2, "count", anchor="middle", cls="label",
                       extra=f' transform="rotate(-90 14 {_num(PAD_T + ph / 2)})"'))
    return _close(parts)


def stacked_columns(title: str, buckets: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, y_fmt: Fmt) -> Markup:
    """One column per bucket (a day, an hour), stacked by series (a model, a spec), with a legend."""
    parts = _open(title, W, H + 20)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B - 10
    top_pad = PAD_T + 20
    totals = [sum(vals[k] for _, vals in series) for k in range(len(buckets))]
    top = max(totals + [1e-12])
    ticks = nice_ticks(0, top, 4)
    top = max(top, ticks[-1])
    for v in ticks:
        y = top_pad + ph - v / top * ph
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{_num(y)}" y2="{_num(y)}"/>')
        parts.append(_text(PAD_L - 6, y + 4, y_fmt(v), anchor="end", cls="tick"))
    colw = pw / max(1, len(buckets))
    every = max(1, math.ceil(len(buckets) / 10))
    for k, bucket in enumerate(buckets):
        x, base = PAD_L + k * colw, top_pad + ph
        for i, (name, vals) in enumerate(series):
            h = vals[k] / top * ph
            if h > 0:
                base -= h
                parts.append(f'<rect x="{_num(x + colw * 0.12)}" y="{_num(base)}" width="{_num(colw * 0.76)}" height="{_num(h)}" '
                             f'fill="{fill(i)}"><title>{escape(f"{bucket} · {name}: {y_fmt(vals[k])}")}</title></rect>')
        if k % every == 0:
            parts.append(_text(x + colw / 2, top_pad + ph + 16, bucket, anchor="middle", cls="tick"))
    parts += _legend([name for name, _ in series], lines=False, y=PAD_T)
    return _close(parts)


@dataclass
class ForestRow:
    """One difference with its interval: drawn on its own scale around zero (metrics differ in units)."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    text: str


def forest(title: str, rows: Sequence[ForestRow]) -> Markup:
    """A forest plot: each row a point estimate and a whisker for its interval, zero marked by a line."""
    row_h, label_w, text_w, width = 34, 150, 320, 780
    height = PAD_T + 18 + len(rows) * row_h + 8
    plot_l, plot_r = label_w, width - text_w
    mid = (plot_l + plot_r) / 2
    half = (plot_r - plot_l) / 2 - 6
    parts = _open(title, width, height)
    parts.append(_text(plot_l, PAD_T + 2, "← B lower", cls="tick"))
    parts.append(_text(plot_r, PAD_T + 2, "B higher →", anchor="end", cls="tick"))
    parts.append(f'<line class="ref" x1="{_num(mid)}" x2="{_num(mid)}" y1="{PAD_T + 10}" y2="{height - 6}"/>')
    for i, r in enumerate(rows):
        y = PAD_T + 18 + i * row_h + row_h / 2
        parts.append(_text(label_w - 10, y + 4, r.label, anchor="end", cls="tick"))
        parts.append(_text(plot_r + 10, y + 4, r.text, cls="value"))
        if r.estimate is None:
            parts.append(_text(mid + 6, y + 4, "no estimate", cls="tick"))
            continue
        scale = max(abs(v) for v in (r.estimate, r.low, r.high) if v is not None) or 1.0

        def at(v: float, scale: float = scale) -> float:
            return mid + v / scale * half

        if r.low is not None and r.high is not None:
            parts.append(f'<line class="whisker" x1="{_num(at(r.low))}" x2="{_num(at(r.high))}" y1="{_num(y)}" y2="{_num(y)}"/>')
            for v in (r.low, r.high):
                parts.append(f'<line class="whisker" x1="{_num(at(v))}" x2="{_num(at(v))}" y1="{_num(y - 6)}" y2="{_num(y + 6)}"/>')
        parts.append(_marker("square", at(r.estimate), y, "#000"))
    return _close(parts)
