"""Watch the agent play: recorded episodes rendered to MP4 through the real emulator and encoder,
read back with a second decoder (PyAV) rather than the encoder's own ffmpeg."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import AGENTS, GAME, STATE

CYCLING = AGENTS / "cycling_agent.py"
STEPS = 300


def _decoded(video: Path) -> list[np.ndarray]:
    av = pytest.importorskip("av", reason="the second reader: pip install av")
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, cli) -> Path:
    r = tmp_path_factory.mktemp("replay") / "r"
    res = cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(CYCLING), "--timestep-limit", str(STEPS),
              "--record", "--seed", "3", "--results-dir", str(r), "--quiet", cwd=r.parent)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Best episode:" in res.stdout and "best-episode.mp4" in res.stdout
    return r


def test_eval_record_renders_the_best_episode_frame_for_frame(recorded: Path) -> None:
    from contestkit.env.envs import make_contest_env

    video = recorded / "best-episode.mp4"
    frames = _decoded(video)
    # The episode the budget cut: its start, then 4 emulator frames for each of its 300 timesteps.
    assert json.loads((recorded / "summary.json").read_text())["timesteps"] == STEPS
    assert len(frames) == 1 + 4 * STEPS
    assert frames[0].shape == (224, 320, 3)
    env = make_contest_env(GAME, STATE)
    try:
        first, _ = env.reset()
    finally:
        env.close()
    error = np.abs(frames[0].astype(int) - first.astype(int)).mean()
    later = np.abs(frames[-1].astype(int) - first.astype(int)).mean()
    assert error < 3.0 and later > 3 * error, (error, later)  # the first observation, up to H.264's loss
    assert (recorded / "best-episode.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_replay_renders_a_chosen_episode_and_refuses_a_bad_choice(recorded: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "watch" / "one.mp4"
    res = cli("replay", str(recorded), "--episode", "1", "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["frames"] == len(_decoded(out)) == 1 + 4 * STEPS
    assert Path(doc["poster"]) == out.with_suffix(".png") and out.with_suffix(".png").is_file()
    res = cli("replay", str(recorded), "--episode", "9")
    assert res.returncode == 2 and "choose best, worst, last or a number from 1 to 1" in " ".join(res.stderr.split())
    res = cli("replay", str(tmp_path))
    assert res.returncode == 2 and "--record" in res.stderr and "Traceback" not in res.stderr


def test_episodes_pair_movies_with_monitor_rows_and_best_is_the_highest(tmp_path: Path) -> None:
    from contestkit.runs import replay

    (tmp_path / "bk2").mkdir()
    for i in range(4):
        (tmp_path / "bk2" / f"Airstriker-Genesis-v0-Level1-{i:06d}.bk2").write_bytes(b"")
    (tmp_path / "monitor.csv").write_text("r,l,t\n10,100,1\n30,200,2\n5,50,3\n")
    found = replay.episodes(tmp_path)
    expected = [(1, 10, 100), (2, 30, 200), (3, 5, 50), (4, None, None)]
    assert [(e.number, e.reward, e.timesteps) for e in found] == expected
    assert replay.choose(found, "best").number == 2 and replay.choose(found, "worst").number == 3
    assert replay.choose(found, "last").number == 4 and not replay.choose(found, "last").finished


def test_rendering_stops_at_the_frame_bound(recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound (a contest episode's 4,500 timesteps of 4 frames, and its start) caps what a movie
    # that claims more can cost in time and disk; lowered here so that a short recording hits it.
    from contestkit.runs import replay

    monkeypatch.setattr(replay, "MAX_FRAMES", 25)
    episode = replay.choose(replay.episodes(recorded), "last")
    done = replay.render(episode, tmp_path / "capped.mp4")
    assert done.frames == 25 == len(_decoded(done.video))
