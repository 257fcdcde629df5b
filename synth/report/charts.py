"""Inline SVG charts drawn on the server: horizontal bars and histograms that read on their own.

Every chart carries its title, axis labels, a legend when there is more than one series, and the value
of every bar as text, so a reader (or a screenshot) needs no tooltip. All text is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 600
ROW = 22
FONT = 12
CHAR_WIDTH = 6.6  # rough width of one character at FONT px, to place text without measuring it

Series = tuple[str, str]
"""(name shown in the legend, fill colour)"""

ACCEPTED: Series = ("accepted", "#2f7d4f")
REJECTED: Series = ("rejected", "#c2453d")
UNJUDGED: Series = ("no verdict", "#a3a8b0")
PLAIN: Series = ("count", "#3a6ea5")
CACHED: Series = ("cached input", "#9dbbe0")
UNCACHED: Series = ("uncached input", "#3a6ea5")
OUTPUT: Series = ("output", "#e0a03a")


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: a label, one value per series (stacked), and the text shown after it."""

    label: str
    values: tuple[float, ...]
    note: str = ""


def fmt_int(value: float) -> str:
    return f"{round(value):,}"


def fmt_pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}" if share in (0, 1) else f"{share:.1%}"


def nice_ticks(maximum: float, steps: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum` (1, 2, 2.5 or 5 times a power of ten apart)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / steps
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = math.ceil(maximum / step - 1e-9)
    return [i * step for i in range(count + 1)]


def _tick_text(value: float) -> str:
    return fmt_int(value) if value == int(value) else f"{value:g}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = FONT, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _open(title: str, height: float) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'role="img" font-family="system-ui, sans-serif" fill="#222">',
        f"<title>{escape(title)}</title>",
        _text(0, 16, title, size=14, extra=' font-weight="600"'),
    ]


def _legend(series: Sequence[Series], y: float) -> list[str]:
    if len(series) < 2:
        return []
    parts = []
    x = float(WIDTH)
    for name, colour in reversed(series):
        x -= len(name) * CHAR_WIDTH + 24
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, y, name, size=11))
    return parts


def _empty(title: str, message: str) -> str:
    parts = _open(title, 60)
    parts.append(_text(0, 44, message, extra=' fill="#666"'))
    return "".join(parts) + "</svg>"


def hbars(
    title: str,
    bars: Sequence[Bar],
    series: Sequence[Series] = (PLAIN,),
    *,
    axis: str,
    label_width: int = 180,
    note_width: int = 120,
) -> str:
    """Horizontal (stacked) bars, one row per `Bar`, with the value axis labelled `axis`."""
    if not bars:
        return _empty(title, "nothing to show")
    top, bottom = 36, 40
    height = top + ROW * len(bars) + bottom
    plot_x, plot_w = label_width, WIDTH - label_width - note_width
    ticks = nice_ticks(max(sum(bar.values) for bar in bars))
    scale = plot_w / ticks[-1]
    parts = _open(title, height) + _legend(series, 16)
    axis_y = top + ROW * len(bars)
    for tick in ticks:
        x = plot_x + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e3e5e8"/>')
        parts.append(_text(x, axis_y + 14, _tick_text(tick), anchor="middle", size=11, extra=' fill="#555"'))
    for row, bar in enumerate(bars):
        y = top + row * ROW
        parts.append(f"<g><title>{escape(bar.label)}: {escape(bar.note)}</title>")
        parts.append(_text(plot_x - 8, y + 15, _short(bar.label, int((label_width - 14) / 7.4)), anchor="end"))
        x = float(plot_x)
        for value, (_, colour) in zip(bar.values, series, strict=False):
            width = value * scale
            if width > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{max(width, 1):.1f}" height="{ROW - 8}" fill="{colour}"/>'
                )
            x += width
        parts.append(_text(x + 6, y + 15, bar.note, size=11))
        parts.append("</g>")
    parts.append(f'<line x1="{plot_x}" y1="{axis_y}" x2="{plot_x + plot_w}" y2="{axis_y}" stroke="#888"/>')
    parts.append(_text(plot_x + plot_w / 2, height - 6, axis, anchor="middle", size=11, extra=' fill="#444"'))
    return "".join(parts) + "</svg>"


def histogram(
    title: str,
    bins: Sequence[tuple[str, tuple[int, ...]]],
    series: Sequence[Series] = (PLAIN,),
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Vertical (stacked) bars over ordered bins, the total of each bin written above it."""
    if not bins or not any(sum(counts) for _, counts in bins):
        return _empty(title, "nothing to show")
    height = 250
    left, right, top, bottom = 54, 8, 40, 48
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    ticks = nice_ticks(max(sum(counts) for _, counts in bins))
    scale = plot_h / ticks[-1]
    slot = plot_w / len(bins)
    gap = min(6.0, slot * 0.2)
    base = top + plot_h
    parts = _open(title, height) + _legend(series, 16)
    for tick in ticks:
        y = base - tick * scale
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e5e8"/>')
        parts.append(_text(left - 6, y + 4, _tick_text(tick), anchor="end", size=11, extra=' fill="#555"'))
    label_every = max(1, math.ceil(len(bins) * 7 * CHAR_WIDTH / plot_w / 1.4)) if len(bins) > 12 else 1
    for index, (label, counts) in enumerate(bins):
        x = left + index * slot + gap / 2
        total = sum(counts)
        parts.append(f"<g><title>{escape(label)}: {fmt_int(total)}</title>")
        y = float(base)
        for count, (_, colour) in zip(counts, series, strict=False):
            h = count * scale
            if h > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y - h:.1f}" width="{slot - gap:.1f}" height="{h:.1f}" fill="{colour}"/>'
                )
            y -= h
        if total:
            parts.append(_text(x + (slot - gap) / 2, y - 4, fmt_int(total), anchor="middle", size=11))
        if index % label_every == 0:
            parts.append(_text(x + (slot - gap) / 2, base + 15, label, anchor="middle", size=11, extra=' fill="#444"'))
        parts.append("</g>")
    parts.append(f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#888"/>')
    parts.append(_text(left + plot_w / 2, height - 8, x_label, anchor="middle", size=11, extra=' fill="#444"'))
    y_mid = top + plot_h / 2
    parts.append(
        _text(
            14, y_mid, y_label, anchor="middle", size=11, extra=f' fill="#444" transform="rotate(-90 14 {y_mid:.1f})"'
        )
    )
    return "".join(parts) + "</svg>"


def meter(share: float, width: int = 90, *, graded: bool = True) -> str:
    """A small inline bar for a share in [0, 1]: graded (green, amber, red) for a score, plain for a share."""
    share = min(max(share, 0.0), 1.0)
    colour = PLAIN[1]
    if graded:
        colour = ACCEPTED[1] if share >= 0.7 else "#d08a2c" if share >= 0.4 else REJECTED[1]
    return (
        f'<svg class="meter" width="{width}" height="10" viewBox="0 0 {width} 10" role="img">'
        f"<title>{share:.2f}</title>"
        f'<rect width="{width}" height="10" fill="#e6e8eb"/>'
        f'<rect width="{share * width:.1f}" height="10" fill="{colour}"/></svg>'
    )
