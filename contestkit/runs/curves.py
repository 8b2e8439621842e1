"""Reward curves as pictures: a sparkline for the terminal and an SVG for the results directory.

Hand-written SVG rather than matplotlib: a reward curve is one polyline, and an eval should not
pull a plotting stack into every install (or every agent image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from contestkit.env.scoring import score_text

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


@dataclass(frozen=True)
class Frame:
    """A chart's canvas and plot area, shared by every picture contestkit draws.

    The eval's reward curve, the server's score histogram and the benchmarks' learning curves are
    read side by side (a README, a job page), so they share one size, one margin scheme, one way
    of labelling the y axis and one SVG header; this is the one place those are decided.
    """

    width: int = 640
    height: int = 320
    left: int = 56
    right: int = 20
    top: int = 48
    bottom: int = 40

    def x(self, fraction: float) -> float:
        """The canvas x of a point ``fraction`` of the way along the plot area."""
        return self.left + (self.width - self.left - self.right) * fraction

    def y(self, fraction: float) -> float:
        """The canvas y of a point ``fraction`` of the way up the plot area."""
        return self.height - self.bottom - (self.height - self.top - self.bottom) * fraction

    def axes(self) -> list[str]:
        """The x axis along the bottom of the plot area and the y axis up its left side."""
        x0, x1, y0, y1 = self.left, self.width - self.right, self.height - self.bottom, self.top
        return [
            f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/>',
            f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y0}" stroke="#888"/>',
        ]

    def y_grid(self, lo: float, hi: float) -> list[str]:
        """Faint grid lines at round values between ``lo`` and ``hi``, labelled, to read values off."""
        span = (hi - lo) or 1.0
        x0, x1, lines = self.left, self.width - self.right, []
        for tick in nice_ticks(lo, hi):
            y = self.y((tick - lo) / span)
            lines.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
            lines.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
        return lines

    def document(self, title: str, body: Sequence[str]) -> str:
        """The whole SVG: header, white background (readable on a dark page), escaped title, ``body``."""
        w, h = self.width, self.height
        return (
            "\n".join(
                [
                    f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                    'font-family="sans-serif" font-size="12" role="img">',
                    '<rect width="100%" height="100%" fill="white"/>',
                    f'<text x="{self.left}" y="20" font-size="14">{escape(title)}</text>',
                    *body,
                    "</svg>",
                ]
            )
            + "\n"
        )


def polyline(points: Sequence[tuple[float, float]], colour: str, width: float = 1.0, opacity: float = 1.0) -> str:
    """One series as an SVG polyline of canvas points."""
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    fade = f' stroke-opacity="{opacity:g}"' if opacity < 1 else ""
    return f'<polyline points="{text}" fill="none" stroke="{colour}" stroke-width="{width:g}"{fade}/>'


def write_reward_svg(
    rewards: Sequence[float], path: Path, *, title: str = "", timesteps: Sequence[float] | None = None
) -> Path | None:
    """Episode reward and its moving average, as a small standalone SVG; None with no episodes."""
    svg = reward_svg(rewards, title=title, timesteps=timesteps)
    if svg is None:
        return None
    path.write_text(svg)
    return path


def reward_svg(rewards: Sequence[float], *, title: str = "", timesteps: Sequence[float] | None = None) -> str | None:
    """The SVG text of ``write_reward_svg``; the contest server's job page also draws it inline, live.

    Round tick values and a legend naming both lines and the averaging window, since the picture
    is read without the table that produced it. With ``timesteps`` (the timestep at which each
    episode ended, :func:`episode_ends`) the x axis is timesteps, as RL results are read; else
    it counts episodes.
    """
    if not rewards:
        return None
    frame = Frame()
    lo, hi = min(min(rewards), 0.0), max(max(rewards), 0.0)
    span = (hi - lo) or 1.0
    n = len(rewards)
    window = smoothing_window(n)
    by_steps = timesteps is not None and len(timesteps) == n
    if by_steps:
        last = max(float(timesteps[-1]), 1.0)  # type: ignore[index]
        xs = [float(t) / last for t in timesteps]  # type: ignore[union-attr]
        ticks = [(tick / last, f"{tick:,.0f}") for tick in nice_ticks(0, last, 6)]
        axis, caption = "timesteps", f"{n} episodes, {last:,.0f} timesteps"
    else:
        xs = [i / max(n - 1, 1) for i in range(n)]
        ticks = [((tick - 1) / max(n - 1, 1), f"{tick:g}") for tick in (nice_ticks(1, n, 6) if n > 1 else [1])]
        axis, caption = "episode", f"{n} episodes"

    def points(values: Sequence[float]) -> list[tuple[float, float]]:
        return [(frame.x(x), frame.y((v - lo) / span)) for x, v in zip(xs, values, strict=True)]

    left, bottom = frame.left, frame.height - frame.bottom
    body = [
        f'<line x1="{left}" y1="34" x2="{left + 20}" y2="34" stroke="#9ab" stroke-width="1.5"/>',
        f'<text x="{left + 25}" y="38">episode reward</text>',
    ]
    if n >= 2:
        body += [
            f'<line x1="{left + 150}" y1="34" x2="{left + 170}" y2="34" stroke="#c33" stroke-width="2"/>',
            f'<text x="{left + 175}" y="38">moving average ({window} episodes)</text>',
        ]
    body += frame.y_grid(lo, hi)
    for fraction, label in ticks:
        x = frame.x(fraction)
        body.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#888"/>')
        body.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')
    body += frame.axes()
    body.append(f'<text x="{frame.x(0.5):.0f}" y="{frame.height - 6}" text-anchor="middle">{axis}</text>')
    body.append(polyline(points(rewards), "#9ab"))
    if n >= 2:
        body.append(polyline(points(moving_average(rewards, window)), "#c33", width=2))
    return frame.document(f"{title} — episode reward ({caption})", body)


def episode_ends(lengths: Sequence[int]) -> list[int]:
    """The timestep at which each episode ended, from the episodes' lengths (monitor.csv's ``l``)."""
    total, ends = 0, []
    for length in lengths:
        total += length
        ends.append(total)
    return ends


def histogram_svg(values: Sequence[float], *, title: str = "", bins: int = 20, mark: float | None = None) -> str | None:
    """How ``values`` (e.g. the teams' scores on one level) are spread, as bars; None with no values.

    ``mark`` draws a line at one value (a team's own score), so a reader sees where it stands.
    """
    if not values:
        return None
    frame = Frame(height=260, left=40, right=40, top=40, bottom=40)
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = max(1, min(bins, len(values)))
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    top = max(counts)
    body = []
    for i, count in enumerate(counts):
        if not count:
            continue
        x0, x1, y = frame.x(i / bins), frame.x((i + 1) / bins), frame.y(count / top)
        body.append(
            f'<rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 2, 1):.1f}" '
            f'height="{frame.y(0) - y:.1f}" fill="#36a"><title>{score_text(lo + i * width)} to '
            f"{score_text(lo + (i + 1) * width)}: "
            f"{count} team{'s' if count != 1 else ''}</title></rect>"
        )
    if mark is not None and lo <= mark <= hi:
        mx = frame.x((mark - lo) / (hi - lo))
        body.append(
            f'<line x1="{mx:.1f}" y1="{frame.top - 8}" x2="{mx:.1f}" y2="{frame.y(0)}" stroke="#c33" stroke-width="2"/>'
        )
    bottom = frame.y(0)
    body += [
        f'<line x1="{frame.left}" y1="{bottom}" x2="{frame.width - frame.right}" y2="{bottom}" stroke="#888"/>',
        f'<text x="{frame.left}" y="{bottom + 16}">{score_text(lo)}</text>',
        f'<text x="{frame.width - frame.right}" y="{bottom + 16}" text-anchor="end">{score_text(hi)}</text>',
        f'<text x="{frame.left - 4}" y="{frame.top + 4}" text-anchor="end">{top}</text>',
        f'<text x="{frame.left - 4}" y="{bottom}" text-anchor="end">0</text>',
    ]
    n = len(values)
    return frame.document(f"{title} ({n} team{'s' if n != 1 else ''})", body)


def write_level_curve(level_dir: Path) -> Path | None:
    """``reward-curve.svg`` of an evaluated level, from its monitor.csv and summary.json.

    One home for the picture every evaluated level gets, from ``contestkit eval`` and from the
    contest server's executors alike.
    """
    from contestkit.runs import results  # deferred: results is not needed for the terminal's sparklines

    doc = results.read_json(level_dir / results.SUMMARY) or {}
    title = f"{doc.get('game', '')} {doc.get('state', '') or ''}".strip() or level_dir.name
    episodes = results.read_monitor(level_dir / results.MONITOR)
    rewards = [reward for reward, _, _ in episodes]
    ends = episode_ends([length for _, length, _ in episodes])
    return write_reward_svg(rewards, level_dir / results.REWARD_CURVE, title=title, timesteps=ends)
