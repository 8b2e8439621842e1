"""Reward curves as pictures: a sparkline for the terminal and an SVG for the results directory.

Hand-written SVG rather than matplotlib: a reward curve is one polyline, and an eval should not
pull a plotting stack into every install (or every agent image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """Episode rewards in one line of block characters (the last ``width`` bins)."""
    if not values:
        return ""
    if len(values) > width:  # average into bins so long runs still fit
        step = len(values) / width
        values = [
            sum(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            / len(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            for i in range(width)
        ]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(_BLOCKS[min(len(_BLOCKS) - 1, int((v - lo) / span * (len(_BLOCKS) - 1) + 0.5))] for v in values)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def smoothing_window(n: int) -> int:
    """How many episodes the moving average spans: visibly smoother than the raw series at any length.

    A twentieth of the run is the classic choice for long runs, but below 40 episodes it is a window
    of 1, i.e. the raw series again; so short runs still average over at least 3 episodes.
    """
    return max(3, min(n // 20 if n >= 60 else n // 10, 100))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round axis values (1, 2 or 5 times a power of ten) covering [lo, hi], so a reader can read values off."""
    span = hi - lo
    if span <= 0:
        return [lo]
    magnitude = 10 ** math.floor(math.log10(span / count))
    step = next(m * magnitude for m in (1, 2, 5, 10, 20) if span / (m * magnitude) <= count + 1)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def write_reward_svg(rewards: Sequence[float], path: Path, *, title: str = "") -> Path | None:
    """Episode reward and its moving average, as a small standalone SVG; None with no episodes."""
    svg = reward_svg(rewards, title=title)
    if svg is None:
        return None
    path.write_text(svg)
    return path


def reward_svg(rewards: Sequence[float], *, title: str = "") -> str | None:
    """The SVG text of ``write_reward_svg``; the contest server's job page also draws it inline, live.

    Hand-drawn axes with round tick values and a legend naming both lines and the averaging window,
    since the picture is read without the table that produced it.
    """
    if not rewards:
        return None
    w, h, left, right, top, bottom = 640, 320, 56, 20, 48, 40
    lo, hi = min(min(rewards), 0.0), max(max(rewards), 0.0)
    span = (hi - lo) or 1.0
    n = len(rewards)
    window = smoothing_window(n)

    def x_of(i: float) -> float:
        return left + (w - left - right) * (i / max(n - 1, 1))

    def y_of(v: float) -> float:
        return h - bottom - (h - top - bottom) * ((v - lo) / span)

    def points(values: Sequence[float]) -> str:
        return " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))

    grid = []
    for tick in nice_ticks(lo, hi):
        y = y_of(tick)
        grid.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#eee"/>')
        grid.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in nice_ticks(1, n, 6) if n > 1 else [1]:
        x = x_of(tick - 1)
        grid.append(f'<line x1="{x:.1f}" y1="{h - bottom}" x2="{x:.1f}" y2="{h - bottom + 4}" stroke="#888"/>')
        grid.append(f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">{tick:g}</text>')
    average = ""
    legend_avg = ""
    if n >= 2:
        smooth = points(moving_average(rewards, window))
        average = f'<polyline points="{smooth}" fill="none" stroke="#c33" stroke-width="2"/>'
        legend_avg = (
            f'<line x1="{left + 150}" y1="34" x2="{left + 170}" y2="34" stroke="#c33" stroke-width="2"/>'
            f'<text x="{left + 175}" y="38">moving average ({window} episodes)</text>'
        )
    body = "\n".join(grid)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" \
font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="18" font-size="14">{escape(title)} — episode reward ({n} episodes)</text>
<line x1="{left}" y1="34" x2="{left + 20}" y2="34" stroke="#9ab" stroke-width="1.5"/>
<text x="{left + 25}" y="38">episode reward</text>
{legend_avg}
{body}
<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#888"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#888"/>
<text x="{(left + w - right) / 2:.0f}" y="{h - 6}" text-anchor="middle">episode</text>
<polyline points="{points(rewards)}" fill="none" stroke="#9ab" stroke-width="1"/>
{average}
</svg>
"""


def histogram_svg(values: Sequence[float], *, title: str = "", bins: int = 20, mark: float | None = None) -> str | None:
    """How ``values`` (e.g. the teams' scores on one level) are spread, as bars; None with no values.

    ``mark`` draws a line at one value (a team's own score), so a reader sees where it stands.
    """
    if not values:
        return None
    w, h, pad = 640, 260, 40
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = max(1, min(bins, len(values)))
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    top = max(counts)
    bar = (w - 2 * pad) / bins
    bars = []
    for i, count in enumerate(counts):
        if not count:
            continue
        bh = (h - 2 * pad) * count / top
        bars.append(
            f'<rect x="{pad + i * bar + 1:.1f}" y="{h - pad - bh:.1f}" width="{max(bar - 2, 1):.1f}" '
            f'height="{bh:.1f}" fill="#36a"><title>{lo + i * width:g} to {lo + (i + 1) * width:g}: '
            f"{count} team{'s' if count != 1 else ''}</title></rect>"
        )
    marker = ""
    if mark is not None and lo <= mark <= hi:
        mx = pad + (w - 2 * pad) * (mark - lo) / (hi - lo)
        marker = f'<line x1="{mx:.1f}" y1="{pad - 8}" x2="{mx:.1f}" y2="{h - pad}" stroke="#c33" stroke-width="2"/>'
    n = len(values)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" \
font-family="sans-serif" font-size="12" role="img">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="20" font-size="14">{escape(title)} ({n} team{"s" if n != 1 else ""})</text>
<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>
{"".join(bars)}
{marker}
<text x="{pad}" y="{h - pad + 16}">{lo:g}</text>
<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">{hi:g}</text>
<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{top}</text>
<text x="{pad - 4}" y="{h - pad}" text-anchor="end">0</text>
</svg>
"""


def write_level_curve(level_dir: Path) -> Path | None:
    """``reward-curve.svg`` of an evaluated level, from its monitor.csv and summary.json.

    One home for the picture every evaluated level gets, from ``contestkit eval`` and from the
    contest server's executors alike.
    """
    from contestkit import results  # deferred: results is not needed for the terminal's sparklines

    doc = results.read_json(level_dir / results.SUMMARY) or {}
    title = f"{doc.get('game', '')} {doc.get('state', '') or ''}".strip() or level_dir.name
    rewards = [reward for reward, _, _ in results.read_monitor(level_dir / results.MONITOR)]
    return write_reward_svg(rewards, level_dir / results.REWARD_CURVE, title=title)
