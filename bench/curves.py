"""Learning curves of benchmark runs, drawn in one SVG: the picture beside the README's tables.

Each group (an agent, or a start such as "pretrained") is drawn as the mean episode reward in
windows of the run, averaged over its runs (thick), with each run's own curve thin behind it, so
the spread between seeds is seen, not only the mean. Used by ``finetune.py`` and, for
either script's JSON, from the command line:

    python bench/curves.py bench/results/agents-seeds-ppo.json --svg bench/results/agents-seeds.svg
    python bench/curves.py bench/results/finetune.json --svg bench/results/finetune.svg
    python bench/curves.py bench/results/agents-seeds-ppo.json bench/results/agents-seeds-lr5e-4*.json \
        --agents ppo-pytorch --svg bench/results/agents-seeds-lr.svg
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contestkit.runs.curves import Frame, polyline  # noqa: E402
from contestkit.runs.results import read_monitor  # noqa: E402

Curve = list[tuple[int, float]]
PALETTE = ("#c33", "#36c", "#393", "#c80", "#639", "#888")


def episodes(monitor: Path) -> Curve:
    """A run's finished episodes as (timestep at which it ended, reward)."""
    curve, t = [], 0
    for reward, length, _ in read_monitor(monitor):
        t += length
        curve.append((t, reward))
    return curve


def _binned(curve: Curve, timesteps: int, bins: int) -> list[list[float]]:
    per_bin: list[list[float]] = [[] for _ in range(bins)]
    for end, reward in curve:
        per_bin[min(bins - 1, max(0, end - 1) * bins // timesteps)].append(reward)
    return per_bin


def curves_svg(groups: dict[str, list[Curve]], timesteps: int, path: Path, title: str, bins: int = 20) -> None:
    """Every group's runs, binned over ``timesteps``; see the module docstring for what is drawn."""
    frame = Frame(top=40 + 16 * len(groups))  # room for one legend line per group
    means: dict[str, list[float | None]] = {}
    singles: dict[str, list[list[float | None]]] = {}
    for name, runs in groups.items():
        pooled: list[list[float]] = [[] for _ in range(bins)]
        singles[name] = []
        for run in runs:
            per_bin = _binned(run, timesteps, bins)
            singles[name].append([statistics.fmean(b) if b else None for b in per_bin])
            for i, b in enumerate(per_bin):
                pooled[i].extend(b)
        means[name] = [statistics.fmean(b) if b else None for b in pooled]
    values = [v for s in singles.values() for run in s for v in run if v is not None] or [0.0]
    lo, hi = min(0.0, *values), max(values) or 1.0

    def points(series: list[float | None]) -> list[tuple[float, float]]:
        placed = [((i + 0.5) / bins, (v - lo) / (hi - lo)) for i, v in enumerate(series) if v is not None]
        return [(frame.x(x), frame.y(y)) for x, y in placed]

    bottom = frame.height - frame.bottom
    body = [
        *frame.y_grid(lo, hi),
        *frame.axes(),
        f'<text x="{frame.width - frame.right}" y="{bottom + 16}" text-anchor="end">timestep {timesteps:,}</text>',
        f'<text x="{frame.left}" y="{bottom + 16}">mean episode reward per {timesteps // bins:,} timesteps</text>',
    ]
    for k, name in enumerate(groups):
        colour = PALETTE[k % len(PALETTE)]
        if len(singles[name]) > 1:
            body += [polyline(points(run), colour, opacity=0.3) for run in singles[name]]
        body.append(polyline(points(means[name]), colour, width=2.5))
        label = f"{name} ({len(groups[name])} runs)" if len(groups[name]) > 1 else name
        body.append(f'<text x="{frame.left + 8}" y="{40 + 16 * k}" fill="{colour}">{escape(label)}</text>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frame.document(title, body))


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw benchmark runs (their monitor.csv) in one SVG.")
    parser.add_argument(
        "results", type=Path, nargs="+", help="JSON written by bench/agents.py or bench/finetune.py --output"
    )
    parser.add_argument("--svg", type=Path, required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument("--agents", default=None, help="comma-separated: only these of bench/agents.py's agents")
    args = parser.parse_args()
    groups: dict[str, list[Curve]] = {}
    timesteps, title = 0, ""
    keep = set(args.agents.split(",")) if args.agents else None
    for document in (json.loads(p.read_text()) for p in args.results):
        if "agents" in document:  # bench/agents.py: one group per agent
            timesteps = max(timesteps, document["timesteps"])
            title = f"{document['game']} {document['state']}: learning curves, {timesteps:,} timesteps"
            # Runs with other agent settings (bench/agents.py's agent_overrides) are their own group.
            overrides = ", ".join(
                f"{key.removeprefix('AGENT_').lower()}={value}"
                for key, value in document.get("agent_overrides", {}).items()
            )
            suffix = f" [{overrides}]" if overrides else ""
            rows = [
                (row["agent"] + suffix, row["results_dir"])
                for row in document["agents"]
                if keep is None or row["agent"] in keep
            ]
        else:  # bench/finetune.py: one group per start (pretrained, scratch)
            timesteps = max(timesteps, document["eval_timesteps"])
            title = document["title"]
            rows = [(row["start"], row["results_dir"]) for row in document["runs"]]
        for group, results_dir in rows:
            monitor = Path(results_dir) / "monitor.csv"
            if not monitor.is_file():
                raise SystemExit(f"{monitor} is gone: draw the curves before the runs' results are removed.")
            groups.setdefault(group, []).append(episodes(monitor))
    curves_svg(groups, timesteps, args.svg, args.title or title)


if __name__ == "__main__":
    main()
