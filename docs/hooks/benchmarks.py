"""MkDocs hook: the benchmark figures, generated from the result files the bench/ scripts wrote.

Why generated: a table copied by hand into a page can disagree with the measurement it claims to
show, and loses the conditions it was taken under. Every figure on the site comes from a file under
``bench/results/`` (or ``docs/server-load-*.json``), rendered with the date, machine and command
recorded in that file; a file without them fails the build.

Two ways in:

* a line ``<!-- bench: PATH -->`` in a hand-written page is replaced by PATH's figures (the prose
  around it says what they mean);
* the generated page ``bench-results.md`` lists every result file, so none goes unshown.

The pictures the scripts drew (``bench/results/*.svg``) are copied into the site as ``bench/NAME.svg``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = "bench-results.md"
PATTERNS = ("bench/results/**/*.json", "bench/results/**/*.jsonl", "docs/server-load-*.json")
PROVENANCE = ("date", "machine", "command")
MARKER = re.compile(r"^<!-- bench: (?P<path>\S+) -->$", re.MULTILINE)


class BenchDocError(ValueError):
    """A result file the site cannot show honestly (unreadable, or without date, machine or command)."""


def result_files(root: Path = ROOT) -> list[Path]:
    """Every result file, as a path relative to the repository, sorted."""
    found = {p.relative_to(root) for pattern in PATTERNS for p in root.glob(pattern)}
    return sorted(found)


def load(path: Path, root: Path = ROOT) -> list[dict[str, Any]]:
    """The records of a result file: one for ``.json``, one a line for ``.jsonl``; each must say
    when, where and how it was measured."""
    text = (root / path).read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = [json.loads(text)]
    except json.JSONDecodeError as exc:
        raise BenchDocError(f"{path} is not valid JSON ({exc}): fix or regenerate it.") from exc
    for i, record in enumerate(records, 1):
        missing = [key for key in PROVENANCE if not record.get(key)]
        if missing:
            where = f"{path} line {i}" if path.suffix == ".jsonl" else str(path)
            raise BenchDocError(f"{where} has no {', '.join(missing)}: add them so the figure can be read.")
    return records


# --- formatting -------------------------------------------------------------------------------


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value).replace("|", "\\|")


def _machine(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_num(c) if not isinstance(c, str) else c.replace("|", "\\|") for c in row) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def provenance(records: list[dict[str, Any]]) -> str:
    """Date, machine and command of the records (each distinct triple once), and their conditions."""
    seen: list[tuple[str, str, str]] = []
    for r in records:
        triple = (str(r["date"]), _machine(r["machine"]), str(r["command"]))
        if triple not in seen:
            seen.append(triple)
    lines = []
    for date, machine, command in seen:
        lines += [f"*Measured {date} on {machine}:* `{command}`", ""]
    notes = {r.get("conditions") for r in records if r.get("conditions")}
    for note in sorted(notes):
        lines += [f'!!! note "Conditions"\n    {note}', ""]
    historical = {r.get("historical") for r in records if r.get("historical")}
    for note in sorted(historical):
        lines += [f'!!! warning "Historical"\n    {note}', ""]
    return "\n".join(lines)


# --- one renderer per kind of result ---------------------------------------------------------


def _agents(records: list[dict[str, Any]]) -> str:
    d = records[0]
    rows = [
        [
            a["agent"],
            a["seed"],
            a["mean_reward_last20"],
            a["mean_reward_first20"],
            a["mean_reward_all"],
            a["best_episode"],
            a["episodes"],
            a["timesteps_per_s"],
        ]
        for a in d["agents"]
    ]
    head = (
        f"{d['game']} {d['state']}, {d['timesteps']:,} timesteps an agent, runtime `{d['runtime']}`, "
        f"{d['parallel']} at a time; {d['finished']} finished."
    )
    if d.get("agent_overrides"):
        head += " Settings: " + ", ".join(f"`{k}={v}`" for k, v in d["agent_overrides"].items()) + "."
    header = [
        "agent",
        "seed",
        "mean reward, last 20 episodes",
        "first 20",
        "all episodes",
        "best episode",
        "episodes",
        "timesteps/s",
    ]
    return head + "\n\n" + _table(header, rows)


def _comparison(records: list[dict[str, Any]]) -> str:
    """``bench/compare_agents.py``: per agent the goal figures, then every run with the file it came from."""
    d = records[0]
    per_agent = [
        [
            a["agent"],
            a["seeds"],
            ", ".join(_num(v) for v in a["last20_per_seed"]),
            a["median_last20"],
            a["worst_last20"],
            a["median_score"],
            a["median_timesteps_per_s"],
            a["median_ms_per_timestep"],
        ]
        for a in d["summary"]
    ]
    runs = [[r["agent"], r["seed"], r["mean_reward_last20"], r["mean_reward_all"], r["timesteps_per_s"],
             f"`{r['source']}` ({r['source_date']})"] for r in d["runs"]]  # fmt: skip
    header = ["agent", "runs", "last-20 mean per seed", "median seed", "worst seed", "median score",
              "timesteps/s", "ms a timestep"]  # fmt: skip
    return (
        _table(header, per_agent)
        + "\n\nEach run, and the result file (with its conditions) it comes from:\n\n"
        + _table(["agent", "seed", "last 20 episodes", "score (all episodes)", "timesteps/s", "from"], runs)
    )


def _finetune(records: list[dict[str, Any]]) -> str:
    d = records[0]
    rows = [[r["start"], r["seed"], r["score"], r["mean_reward_last20"], r["episodes"]] for r in d["runs"]]
    mean = d.get("mean_score", {})
    head = f"{d.get('title') or d['what']} ({d['template']} template, pretraining seed {d['pretrain_seed']})."
    tail = "Mean score: " + ", ".join(f"{k} **{_num(v)}**" for k, v in mean.items()) + "."
    return head + "\n\n" + _table(["start", "eval seed", "score", "last 20 episodes", "episodes"], rows) + "\n\n" + tail


def _pretrain(records: list[dict[str, Any]]) -> str:
    d = records[0]
    rows = []
    for r in d["runs"]:
        cpu = r.get("cpu_ms_per_timestep", {})
        rows.append(
            [
                r["envs"],
                r["seed"],
                r["timesteps"],
                r["steps_per_s"],
                ", ".join(f"{k} {_num(v, 2)} ms" for k, v in cpu.items()),
                r.get("load_average"),
            ]
        )
    med = d["median_steps_per_s"]
    head = (
        f"{d['what']}; {d['template']} template, {d['rounds']} round(s) of {d['timesteps_per_run']:,} "
        f"timesteps. Median steps/s: "
        + ", ".join(f"`--envs {k}` {_num(v)}" for k, v in med.items())
        + f"; speed-up **{d['speedup']:.2f}x**; load average at the end "
        + ", ".join(_num(x, 2) for x in d.get("load_average_at_end", []))
        + "."
    )
    header = ["--envs", "seed", "timesteps", "steps/s", "CPU per timestep", "load average"]
    return head + "\n\n" + _table(header, rows)


def _agent_step(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["agent"],
            r["timesteps"],
            r["threads"],
            r["mean_ms"],
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["budget_ms"],
            r["within_budget"],
        ]
        for r in records
    ]
    header = [
        "agent",
        "timesteps",
        "threads",
        "mean ms",
        "p50 ms",
        "p99 ms",
        "max ms",
        "contest budget ms",
        "within budget",
    ]
    return "The agent's own time per timestep, learning included.\n\n" + _table(
        header, [[c if not isinstance(c, float) else float(f"{c:.3g}") for c in row] for row in rows]
    )


def _bridge(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        rows.append(
            [
                r["placement"] + (", idle CPUs polling" if r.get("idle_poll") else ""),
                f"**{r['ratio']:.3f}**",
                f"{min(r['ratios']):.2f}-{max(r['ratios']):.2f} ({r['rounds']} x {r['steps_per_run']:,} steps)",
                f"{r['in_process_ms_per_step']:.2f}",
                f"{r['overhead_us_per_step']:.0f}",
                f"{r['floor_ratio']:.3f} ({r['floor_round_trip_us']:.0f} us)",
                "" if r.get("json_bridge_ratio") is None else f"{r['json_bridge_ratio']:.3f}",
            ]
        )
    header = [
        "placement",
        "bridged / in-process (median)",
        "rounds",
        "in-process ms a step",
        "bridge us a step",
        "floor: one bare round trip",
        "2018-style JSON bridge",
    ]
    return f"Time per timestep through the bridge over in-process, {records[0]['game']}.\n\n" + _table(header, rows)


def _eval_runtimes(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"**{r['ratio']:.2f}**",
            ", ".join(f"{x:.2f}" for x in r["ratios"]),
            r["local_steps_per_s"],
            r["docker_steps_per_s"],
            f"{r['startup_local_s']:.2f} s",
            f"{r['startup_docker_s']:.2f} s",
        ]
        for r in records
    ]
    header = [
        "local / docker steps/s (median round)",
        "rounds",
        "local steps/s",
        "docker steps/s",
        "to first timestep, local",
        "to first timestep, docker",
    ]
    head = f"`contestkit eval` in both runtimes, {records[0]['steps_per_run']:,} steps a round."
    return head + "\n\n" + _table(header, rows)


def _placement(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"**{r['ratio']:.2f}**",
            ", ".join(f"{x:.2f}" for x in r["ratios"]),
            r["one_cpu_steps_per_s"],
            r["default_steps_per_s"],
        ]
        for r in records
    ]
    header = ["`--cpuset 1` / the OS's placement (median round)", "rounds", "steps/s, one CPU", "steps/s, the OS's"]
    return (
        f"Whole `contestkit eval --runtime local`, the contest's random agent, {records[0]['steps_per_run']:,} "
        "steps a round.\n\n" + _table(header, rows)
    )


def _images(records: list[dict[str, Any]]) -> str:
    d = records[0]
    sizes = _table(["image", "size MB"], [[k, v] for k, v in d["image_sizes_mb"].items()])
    rb = d.get("rebuild", {})
    rebuild = _table(
        ["what", "seconds"],
        [
            ["one-line agent change, `contestkit build` end to end (median)", rb.get("one_line_rebuild_median_s")],
            ["the same, each run", ", ".join(str(x) for x in rb.get("one_line_rebuild_s", []))],
            ["`--no-cache` build of `contestkit/agent:cpu` (the baseline)", rb.get("agent_cpu_no_cache_build_s")],
            ["goal", rb.get("goal_s")],
            ["goal met", rb.get("meets_goal")],
        ],
    )
    return sizes + "\n\n" + rebuild


def _server_load(records: list[dict[str, Any]]) -> str:
    d = records[0]
    scale = d.get("scale", {})
    head = (
        "Seeded at "
        + ", ".join(f"{v:,} {k}" for k, v in scale.items())
        + f"; {d['seconds_per_phase']:g} s phases; load average at the end "
        + ", ".join(_num(x, 1) for x in d.get("load_average_at_end", []))
        + "."
    )
    rows = [
        [
            r["route"],
            r.get("server", "this"),
            r["database"],
            r["clients"],
            r["think_s"],
            r["login_burst"],
            r["requests"],
            r["req_per_s"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["status_5xx"],
            r.get("server_cores", ""),
            " / ".join(str(v) for v in r.get("cpu_busy_pct", {}).values()),
        ]
        for r in d["rows"]
    ]
    header = [
        "route",
        "server",
        "database",
        "clients",
        "think s",
        "during logins",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "5xx",
        "server's cores",
        "each CPU busy %",
    ]
    goals = _table(["goal", "met"], [[k, "**met**" if v else "not met"] for k, v in d.get("goals", {}).items()])
    text = head + "\n\n" + _table(header, rows) + "\n\nGoals, as the script judged them:\n\n" + goals
    if d.get("wrk"):
        wrk = [
            [r["route"], r["server"], r["database"], r["connections"], r["req_per_s"], r["p50_ms"], r["p99_ms"],
             r["non_2xx"], r["timeouts"], r["server_cores"], " / ".join(str(v) for v in r["cpu_busy_pct"].values())]
            for r in d["wrk"]
        ]  # fmt: skip
        wrk_header = ["route", "server", "database", "connections", "req/s", "p50 ms", "p99 ms", "non-2xx",
                      "timeouts", "server's cores", "each CPU busy %"]  # fmt: skip
        text += "\n\nCross-check with wrk (`--wrk`: `wrk -t2 -cN --latency`):\n\n" + _table(wrk_header, wrk)
    return text


def _transcribed(records: list[dict[str, Any]]) -> str:
    d = records[0]
    text = d.get("title", "")
    return (text + "\n\n" if text else "") + _table(d["columns"], d["rows"])


def _generic(records: list[dict[str, Any]]) -> str:
    rows = [
        [k, json.dumps(v) if isinstance(v, (dict, list)) else v]
        for r in records
        for k, v in r.items()
        if k not in PROVENANCE
    ]
    return _table(["field", "value"], rows)


KINDS: list[tuple[Callable[[dict[str, Any]], bool], Callable[[list[dict[str, Any]]], str]]] = [
    (lambda r: "columns" in r and "rows" in r, _transcribed),
    (lambda r: "per_agent" in r, _agents),
    (lambda r: "summary" in r and "runs" in r, _comparison),
    (lambda r: "mean_score" in r, _finetune),
    (lambda r: "median_steps_per_s" in r, _pretrain),
    (lambda r: "mean_ms" in r and "agent" in r, _agent_step),
    (lambda r: r.get("bench") == "bridge", _bridge),
    (lambda r: r.get("bench") == "eval_runtimes", _eval_runtimes),
    (lambda r: r.get("bench") == "placement", _placement),
    (lambda r: "image_sizes_mb" in r, _images),
    (lambda r: "rows" in r and "goals" in r, _server_load),
]


def render_file(path: Path, root: Path = ROOT) -> str:
    """A result file's figures: where they come from, then the table."""
    records = load(path, root)
    renderer = next((fn for test, fn in KINDS if test(records[0])), _generic)
    return f"{provenance(records)}\n{renderer(records)}\n\n<small>Raw figures: `{path.as_posix()}`</small>\n"


def render_all(root: Path = ROOT) -> str:
    """The page that lists every result file."""
    parts = [
        "# All benchmark results",
        "",
        "Every result file the `bench/` scripts wrote, generated when the site is built "
        "(`docs/hooks/benchmarks.py`). The benchmark pages quote these same files with what they mean; "
        "results marked *historical* were taken on another machine or under load, and are kept for the record.",
        "",
    ]
    for path in result_files(root):
        parts += [f"## `{path.as_posix()}`", "", render_file(path, root), ""]
    return "\n".join(parts)


def expand_markers(markdown: str, root: Path = ROOT) -> str:
    """Replace every ``<!-- bench: PATH -->`` line by PATH's figures."""

    def replace(match: re.Match[str]) -> str:
        path = Path(match["path"])
        if not (root / path).is_file():
            raise BenchDocError(f"a page quotes {path}, which does not exist: fix the marker's path.")
        return render_file(path, root)

    return MARKER.sub(replace, markdown)


def on_files(files: Any, config: Any) -> Any:
    """Add the all-results page and the benchmark pictures to the site."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render_all()))
    for svg in sorted((ROOT / "bench" / "results").glob("*.svg")):
        files.append(File.generated(config, f"bench/{svg.name}", abs_src_path=str(svg)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand_markers(markdown)
