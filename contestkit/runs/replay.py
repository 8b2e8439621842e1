"""Watch an agent play: render a results directory's recorded episodes (.bk2) to MP4 and a poster PNG.

Why: when a score surprises, the first thing anyone does is watch the agent. ``--record`` keeps
each episode as a .bk2 movie (the buttons held on every emulator frame, from the level's start
state), which only the emulator can read; this module plays one back through the emulator, as
the 2018 tooling's ``playback_movie`` did, and encodes what the screen showed with
``imageio-ffmpeg`` (which brings its own ffmpeg, so nothing else needs installing).

The video has one frame for the start of the episode (the env's first observation), then one per
emulated frame: ``4 x timesteps`` more for an episode the budget or the 4,500-timestep limit
ended (the sticky frame skip moves frames between timesteps, never adds any), fewer when the game
ended inside a timestep's last frames. It plays at the Genesis's 60 frames a second, H.264 in
yuv420p, which every browser's ``<video>`` plays.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from contestkit.errors import ContestkitError, NotFoundError, UsageError
from contestkit.runs import results

FPS = 60
POSTER_SUFFIX = ".png"
BEST_VIDEO = results.BEST_VIDEO
LAST_VIDEO = results.LAST_VIDEO
#: The longest episode rendered: the contest's 4,500 timesteps of 4 frames, and its first frame.
MAX_FRAMES = 4 * 4500 + 1

_ID = re.compile(r"-(\d{6})\.bk2$")


class Pick(str, Enum):
    """Which recorded episode ``--episode`` names, besides a number."""

    BEST = "best"
    WORST = "worst"
    LAST = "last"


@dataclass(frozen=True)
class Episode:
    """One recorded episode: its movie, and (once finished) its reward and length from monitor.csv."""

    number: int  # 1-based, in the order they were played
    movie: Path
    reward: float | None
    timesteps: int | None

    @property
    def finished(self) -> bool:
        return self.reward is not None


@dataclass(frozen=True)
class Rendered:
    """What :func:`render` wrote."""

    episode: Episode
    video: Path
    poster: Path
    frames: int


def episodes(results_dir: Path) -> list[Episode]:
    """The recorded episodes of a level's results directory, paired with monitor.csv's rows.

    The env records every episode it starts, in order, so the k-th movie is the k-th monitor row;
    a last movie without a row is the episode the budget cut short."""
    movies = sorted((results_dir / results.RECORDINGS).glob("*.bk2"), key=lambda p: _movie_id(p))
    rows = results.read_monitor(results_dir / results.MONITOR)
    out = []
    for i, movie in enumerate(movies):
        reward, length = (rows[i][0], rows[i][1]) if i < len(rows) else (None, None)
        out.append(Episode(i + 1, movie, reward, length))
    return out


def _movie_id(path: Path) -> int:
    match = _ID.search(path.name)
    return int(match[1]) if match else -1


def level_dir(results_dir: Path) -> Path:
    """The level directory holding recordings: ``results_dir`` itself, or for a ``--levels`` run
    its only level (several levels: the user names one)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise NotFoundError(f"{results_dir} is not a results directory; pass one that `contestkit eval` wrote.")
    if (results_dir / results.RECORDINGS).is_dir():
        return results_dir
    levels = sorted(results.contest_level_dirs(results_dir))
    recorded = [name for name in levels if (results_dir / name / results.RECORDINGS).is_dir()]
    if len(recorded) == 1:
        return results_dir / recorded[0]
    if recorded:
        raise UsageError(f"{results_dir} holds several levels ({', '.join(recorded)}); pass one of their directories.")
    raise NotFoundError(
        f"{results_dir} holds no recorded episodes: evaluate with --record (e.g. "
        "`contestkit eval GAME STATE --record`), then replay its results directory."
    )


def choose(found: list[Episode], which: str) -> Episode:
    """The episode ``which`` names: best, worst, last or a 1-based number."""
    if not found:
        raise NotFoundError("no recorded episodes (bk2/ is empty): the run ended before its first episode began.")
    finished = [e for e in found if e.finished]
    if which == Pick.LAST.value:
        return found[-1]
    if which in (Pick.BEST.value, Pick.WORST.value):
        if not finished:
            return found[-1]  # nothing finished: the one episode there is
        key = (lambda e: e.reward) if which == Pick.BEST.value else (lambda e: -(e.reward or 0.0))
        return max(finished, key=key)  # the first of equals: max keeps the earliest
    if which.isdigit() and 1 <= int(which) <= len(found):
        return found[int(which) - 1]
    raise UsageError(
        f"--episode {which!r}: choose best, worst, last or a number from 1 to {len(found)} "
        f"(the episodes recorded in this run)."
    )


def frames(movie: Path) -> Iterator[np.ndarray]:
    """The screens of a recorded episode, played back through the emulator: the start, then one per
    recorded frame (see the module docstring). Each is a ``(224, 320, 3)`` uint8 array."""
    from contestkit.env.games import retro

    stable_retro = retro()
    try:
        mv = stable_retro.Movie(str(movie))
    except Exception as exc:  # the emulator raises RuntimeError and others for a file it cannot read
        raise ContestkitError(f"{movie} is not a movie the emulator can read ({exc}).") from None
    mv.step()  # the reset's frame: the emulator's reset below replays it
    env = stable_retro.make(
        game=mv.get_game(),
        state=stable_retro.State.NONE,
        use_restricted_actions=stable_retro.Actions.ALL,
        players=mv.players,
        inttype=stable_retro.data.Integrations.ALL,
        render_mode=None,
    )
    try:
        env.initial_state = mv.get_state()
        obs, _ = env.reset()
        yield obs
        count = 1
        while mv.step() and count < MAX_FRAMES:
            keys = [mv.get_key(i, p) for p in range(mv.players) for i in range(env.num_buttons)]
            obs, *_ = env.step(keys)
            count += 1
            yield obs
    finally:
        env.close()


def write_png(path: Path, image: np.ndarray) -> Path:
    """An RGB image as a PNG file (zlib and struct only: no imaging library needed)."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def render(episode: Episode, video: Path) -> Rendered:
    """Encode ``episode`` to ``video`` (MP4) and its poster (the frame halfway through, PNG, beside it)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ContestkitError(
            "rendering needs the imageio-ffmpeg package (it brings its own ffmpeg): pip install imageio-ffmpeg"
        ) from None
    video = Path(video)
    if video.suffix.lower() != ".mp4":
        raise UsageError(f"-o {video}: the video is an MP4; name it FILE.mp4.")
    video.parent.mkdir(parents=True, exist_ok=True)
    poster = video.with_suffix(POSTER_SUFFIX)
    middle = min(movie_frames(episode.movie), MAX_FRAMES) // 2
    tmp = video.with_name(f".{video.name}.part.mp4")
    writer = None
    count, still = 0, None
    try:
        for screen in frames(episode.movie):  # streamed: a whole episode is 18,001 screens, 3.9 GB
            if writer is None:
                height, width, _ = screen.shape
                writer = imageio_ffmpeg.write_frames(
                    str(tmp), (width, height), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
                    macro_block_size=1, output_params=["-movflags", "+faststart"],  # plays while it downloads
                )  # fmt: skip
                writer.send(None)
            writer.send(np.ascontiguousarray(screen))
            if count == middle:
                still = screen.copy()
            count += 1
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(video)
    write_png(poster, still if still is not None else screen)
    return Rendered(episode, video, poster, count)


def movie_frames(movie: Path) -> int:
    """How many screens :func:`frames` yields for ``movie`` (its recorded frames; no emulation)."""
    from contestkit.env.games import retro

    mv = retro().Movie(str(movie))
    count = 0
    while mv.step():
        count += 1
    return count


def default_video(level: Path, episode: Episode, which: str) -> Path:
    """Where a rendered episode goes by default: beside its results, named for what was asked."""
    name = BEST_VIDEO if which == Pick.BEST.value else f"episode-{episode.number}.mp4"
    if which in (Pick.WORST.value, Pick.LAST.value):
        name = f"{which}-episode.mp4"
    return level / name


def render_highlights(level: Path, picks: tuple[Pick, ...] = (Pick.BEST, Pick.LAST)) -> list[Rendered]:
    """The episodes a results page shows, rendered into ``level`` (``best-episode.mp4``,
    ``last-episode.mp4`` and their posters); nothing when nothing was recorded."""
    found = episodes(level)
    if not found:
        return []
    return [render(choose(found, pick.value), default_video(level, found[0], pick.value)) for pick in picks]
