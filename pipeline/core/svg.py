"""Small charts as SVG text, the one plotter: for asset metadata (the UI renders it) and
for the plots benchmarks commit. No plotting library: a picture is a few dozen elements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = ("#4f43dd", "#e07a1f", "#2a9d5b", "#c0392b", "#7f8c8d")
WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 30, 45


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    line: bool = False  # join the points in x order
    points: bool = True  # draw each point (False: the line alone)


def _axis(values: list[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    pad = (hi - lo) * 0.05 or 0.5
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Powers of ten on a log axis (1-2-5 steps when fewer than three fit), else 5 steps."""
    if not log:
        return [lo + (hi - lo) * k / 4 for k in range(5)]
    decades = [10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1)]
    ticks = [t * m for t in decades for m in ((1,) if len(decades) > 3 else (1, 2, 5))]
    return [t for t in ticks if lo <= math.log10(t) <= hi]


def _label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:.4g}K"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.1e}"


def scatter_svg(series: Sequence[Series], title: str, x_label: str, y_label: str, *,
                marked: Sequence[tuple[float, float, str]] = (), log_x: bool = True,
                log_y: bool = True, x_ticks: Sequence[float] | None = None,
                x_marks: Sequence[tuple[float, str]] = ()) -> str:
    """Points (or lines) of each series, a legend, `marked` points ringed and labelled, and
    `x_marks` as dashed vertical lines with a label; log axes where asked (non-positive
    values are dropped from a log axis). `x_ticks` replaces the x axis's own ticks."""
    def keep(x: float, y: float) -> bool:
        return math.isfinite(x) and math.isfinite(y) and (x > 0 or not log_x) and (
            y > 0 or not log_y)

    pts = [[(x, y) for x, y in zip(s.xs, s.ys, strict=True) if keep(x, y)] for s in series]
    rings = [(x, y, t) for x, y, t in marked if keep(x, y)]
    xs = [x for p in pts for x, _ in p] + [x for x, _, _ in rings]
    ys = [y for p in pts for _, y in p] + [y for _, y, _ in rings]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>']
    if not xs:
        return "".join([*out, f'<text x="{LEFT}" y="60">no points</text></svg>'])
    (x0, x1), (y0, y1) = _axis(xs, log_x), _axis(ys, log_y)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + ((math.log10(x) if log_x else x) - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - ((math.log10(y) if log_y else y) - y0) / (y1 - y0) * plot_h

    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="#999"/>')
    for t in _ticks(x0, x1, log_x) if x_ticks is None else x_ticks:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" '
                   f'y2="{TOP + plot_h + 4}" stroke="#999"/><text x="{x:.1f}" '
                   f'y="{TOP + plot_h + 16}" text-anchor="middle">{_label(t)}</text>')
    for t in _ticks(y0, y1, log_y):
        y = py(t)
        out.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" '
                   f'stroke="#999"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{_label(t)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>')
    for i, (s, p) in enumerate(zip(series, pts, strict=True)):
        color = COLORS[i % len(COLORS)]
        if s.line and len(p) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(p))
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                       f'points="{path}"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>'
                for x, y in p if s.points]
        ly = TOP + 14 + 16 * i
        out.append(f'<circle cx="{WIDTH - RIGHT + 14}" cy="{ly - 4}" r="4" fill="{color}"/>'
                   f'<text x="{WIDTH - RIGHT + 24}" y="{ly}">{escape(s.label)}</text>')
    for x, text in x_marks:
        out.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{TOP + plot_h}" '
                   f'stroke="#333" stroke-dasharray="4 3"/><text x="{px(x) + 4:.1f}" '
                   f'y="{TOP + 10}">{escape(text)}</text>')
    for x, y, text in rings:
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="8" fill="none" '
                   f'stroke="black" stroke-width="2"/><text x="{px(x) + 10:.1f}" '
                   f'y="{py(y) - 8:.1f}">{escape(text)}</text>')
    return "".join([*out, "</svg>"])


INLINE_COLORS = ("royalblue", "darkorange", "seagreen", "firebrick", "gray")
IW, IH, IL, IR, IT, IB = 320, 120, 46, 8, 8, 18  # inline size and margins


def inline_svg(series: Sequence[Series], *, x_marks: Sequence[tuple[float, str]] = (),
               rings: Sequence[tuple[float, float]] = (), log_x: bool = False,
               log_y: bool = True) -> str:
    """A small chart in as few characters as it takes (Dagster draws Markdown metadata in
    place only when it is short): integer coordinates, one relative path per series, each
    axis's range labelled at its ends, `x_marks` dashed (their labels left to the caller),
    `rings` circled, series named in their colour. Single quotes and named colours, so it
    also travels in a data URI unencoded."""
    def keep(x: float, y: float) -> bool:
        return math.isfinite(x) and math.isfinite(y) and (x > 0 or not log_x) and (
            y > 0 or not log_y)

    pts = [[(x, y) for x, y in zip(s.xs, s.ys, strict=True) if keep(x, y)] for s in series]
    xs = [x for p in pts for x, _ in p]
    ys = [y for p in pts for _, y in p]
    head = f"<svg xmlns='http://www.w3.org/2000/svg' width='{IW}' height='{IH}' font-size='10'>"
    if not ys:
        return f"{head}<text x='{IL}' y='40'>no points</text></svg>"
    (x0, x1), (y0, y1) = _axis(xs, log_x), _axis(ys, log_y)
    w, h = IW - IL - IR, IH - IT - IB

    def at(x: float, y: float) -> tuple[int, int]:
        return (round(IL + ((math.log10(x) if log_x else x) - x0) / (x1 - x0) * w),
                round(IT + h - ((math.log10(y) if log_y else y) - y0) / (y1 - y0) * h))

    out = [head, "<style>path{fill:none}</style>",
           f"<path d='M{IL},{IT}V{IT + h}H{IW - IR}' stroke='gray'/>",
           f"<text x='2' y='{IT + 8}'>{_label(max(ys))}</text>",
           f"<text x='2' y='{IT + h}'>{_label(min(ys))}</text>",
           f"<text x='{IL}' y='{IH - 4}'>{_label(min(xs))}</text>",
           f"<text x='{IW - IR - 30}' y='{IH - 4}'>{_label(max(xs))}</text>"]
    for i, (s, p) in enumerate(zip(series, pts, strict=True)):
        color = INLINE_COLORS[i % len(INLINE_COLORS)]
        path = [at(x, y) for x, y in sorted(p)]
        if s.line and len(path) > 1:
            steps = "".join(f"l{b[0] - a[0]},{b[1] - a[1]}"
                            for a, b in zip(path, path[1:], strict=False))
            out.append(f"<path d='M{path[0][0]},{path[0][1]}{steps}' stroke='{color}'/>")
        if s.points and path:
            dots = "".join(f"M{x},{y}h0" for x, y in path)
            out.append(f"<path d='{dots}' stroke='{color}' stroke-width='6' "
                       "stroke-linecap='round'/>")
        if len(series) > 1:
            out.append(f"<text x='{IW - IR - 50 * (len(series) - i)}' y='{IT + 8}' "
                       f"fill='{color}'>{escape(s.label)}</text>")
    for x, _ in x_marks:
        px = at(x, ys[0])[0]
        out.append(f"<path d='M{px},{IT}V{IT + h}' stroke='black' stroke-dasharray='3'/>")
    out += [f"<circle cx='{cx}' cy='{cy}' r='6' fill='none' stroke='black'/>"
            for cx, cy in (at(x, y) for x, y in rings if keep(x, y))]
    return "".join([*out, "</svg>"])
