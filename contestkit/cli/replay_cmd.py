"""``contestkit replay RESULTS_DIR``: watch a recorded episode as an MP4 (and a poster PNG)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from contestkit.cli.output import err_console, print_json


def replay(
    results_dir: Path = typer.Argument(..., metavar="RESULTS_DIR", help="A results directory of `eval --record`."),
    episode: str = typer.Option(
        "best",
        "--episode",
        "-e",
        metavar="best|worst|last|N",
        help="Which episode: the best or worst finished one, the last recorded, or its number (1 is the first).",
    ),  # fmt: skip
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE.mp4",
        help="Where the video goes (default: beside the results, e.g. best-episode.mp4); the poster PNG goes "
        "beside it.",
    ),  # fmt: skip
    json_out: bool = typer.Option(False, "--json", help="Print what was rendered as one JSON document."),
) -> None:
    """Render a recorded episode to MP4 with the emulator, plus a poster PNG, to watch the agent play."""
    from contestkit.runs import replay as rp

    level = rp.level_dir(results_dir)
    chosen = rp.choose(rp.episodes(level), episode.strip().lower())
    video = output or rp.default_video(level, chosen, episode.strip().lower())
    if not json_out:
        err_console.print(f"[dim]rendering episode {chosen.number} ({escape(chosen.movie.name)}) ...[/]")
    done = rp.render(chosen, video)
    if json_out:
        print_json({"episode": chosen.number, "reward": chosen.reward, "timesteps": chosen.timesteps,
                    "frames": done.frames, "video": str(done.video), "poster": str(done.poster)})  # fmt: skip
        return
    what = f"reward {chosen.reward:,.1f}, {chosen.timesteps:,} timesteps" if chosen.finished else "not finished"
    err_console.print(
        f"episode {chosen.number} ({what}): {done.frames:,} frames -> [bold]{escape(str(done.video))}[/], "
        f"poster {escape(str(done.poster))}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Attach ``contestkit replay``."""
    app.command("replay")(replay)
