"""The reward-curve picture: readable at any run length (issue 9, item 7)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from contestkit.runs.curves import moving_average, nice_ticks, smoothing_window, write_reward_svg

SVG = "{http://www.w3.org/2000/svg}"


def _polylines(path: Path) -> list[list[tuple[float, float]]]:
    root = ET.parse(path).getroot()
    lines = []
    for poly in root.iter(f"{SVG}polyline"):
        pts = [tuple(map(float, p.split(","))) for p in poly.get("points", "").split()]
        lines.append(pts)
    return lines


@pytest.mark.parametrize("n", [5, 12, 39])
def test_the_moving_average_differs_from_the_raw_series_below_40_episodes(tmp_path: Path, n: int) -> None:
    rewards = [float((i * 37) % 11) for i in range(n)]  # jagged
    path = write_reward_svg(rewards, tmp_path / "curve.svg", title="t")
    assert path is not None
    raw, avg = _polylines(path)
    assert len(raw) == len(avg) == n
    assert raw != avg, "the average line must not hide under the raw series"
    assert smoothing_window(n) >= 3


def test_the_picture_has_a_legend_and_several_y_labels(tmp_path: Path) -> None:
    path = write_reward_svg([10.0, 250.0, 120.0, 480.0, 300.0], tmp_path / "curve.svg", title="Level1")
    text = path.read_text()
    assert "episode reward" in text and "moving average (3 episodes)" in text
    labels = re.findall(r'text-anchor="end">([-0-9.e+]+)</text>', text)
    assert len(labels) >= 4, labels
    ET.parse(path)  # well-formed


def test_a_title_with_markup_is_escaped(tmp_path: Path) -> None:
    text = write_reward_svg([1.0, 2.0], tmp_path / "c.svg", title="<script>x</script>").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    ticks = nice_ticks(0.0, 487.0)
    assert ticks[0] == 0.0 and ticks[-1] <= 487.0 and ticks[-1] >= 300.0
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() in (100.0, 200.0, 50.0)


def test_moving_average_of_a_constant_is_the_constant() -> None:
    assert moving_average([4.0] * 10, 3) == [4.0] * 10


def test_a_level_curve_is_read_against_timesteps(tmp_path: Path) -> None:
    from contestkit.runs.curves import write_level_curve

    # Three episodes of 4,500, 500 and 4,000 timesteps: the second point sits near the first.
    (tmp_path / "monitor.csv").write_text("r,l,t\n100,4500,1\n50,500,2\n300,4000,3\n")
    path = write_level_curve(tmp_path)
    text = path.read_text()
    assert ">timesteps</text>" in text and "9,000 timesteps" in text
    raw = _polylines(path)[0]
    x0, x1, x2 = (x for x, _ in raw)
    assert (x1 - x0) < (x2 - x1) / 4  # placed by the timestep each episode ended, not evenly by episode
    assert "2,000" in text  # round tick labels in timesteps
