"""Pretraining, for real: `python -m agent.pretrain` on Airstriker (its ROM ships with the emulator).

Each test works on a copy of this project in a temporary directory, so that the checkpoint it
writes to ``pretrained/`` never lands in the project itself. A few thousand timesteps with a
small rollout: minutes, so these are marked ``pretrain`` (``pytest -m "not pretrain"`` skips them).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.config import PRETRAINED, Config
from agent.framework import CHECKPOINT_SUFFIX, FRAMEWORK

PROJECT = Path(__file__).resolve().parent.parent
AIRSTRIKER = "game,state\nAirstriker-Genesis,Level1\n"
OBS_SHAPE = (4, 84, 84)
AIRSTRIKER_ACTIONS = 12

pytestmark = pytest.mark.pretrain


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of this project (code and project file), with a one-level list ``air.csv``."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copytree(PROJECT / "agent", copy / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("contestkit.yaml", "Dockerfile"):
        shutil.copy(PROJECT / name, copy / name)
    (copy / "pretrained").mkdir()
    (copy / "air.csv").write_text(AIRSTRIKER)
    return copy


def run(cwd: Path, *args: str, timeout: int = 900, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, AGENT_N_STEPS="256", AGENT_LOG_EVERY="512", AGENT_THREADS="1", **env)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


def pretrain(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "agent.pretrain", "--no-progress", *args)


def load(path: Path, n_actions: int = AIRSTRIKER_ACTIONS):
    """The checkpoint loaded into this template's PPO, as the agent would load it."""
    from agent.ppo import PPO

    ppo = PPO(Config(), OBS_SHAPE, n_actions)
    meta = ppo.load(path)
    return ppo, meta


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pretraining_writes_a_checkpoint_resumes_it_and_evaluation_starts_from_it(project: Path) -> None:
    ckpt = project / PRETRAINED
    first = pretrain(project, "--levels", "air.csv", "--envs", "2", "--timesteps", "1024")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert ckpt.is_file() and (project / "pretrained" / "ppo-reward-curve.svg").is_file()
    ppo, meta = load(ckpt)
    assert meta["timesteps"] == 1024 and meta["framework"] == FRAMEWORK
    assert meta["pretrain"]["envs"] == 2 and meta["pretrain"]["levels"] == [["Airstriker-Genesis", "Level1"]]
    trained = ppo.weights_digest()
    # Not the weights it started from: it learned (4 updates of 256 timesteps).
    started = re.search(r"initial weights sha256=(\w+)", first.stdout).group(1)
    assert started != trained

    # A second run continues the first: it starts from the saved weights and counts on.
    second = pretrain(project, "--levels", "air.csv", "--envs", "2", "--timesteps", "1536")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "resumed at 1,024" in second.stdout
    assert re.search(r"initial weights sha256=(\w+)", second.stdout).group(1) == trained
    ppo, meta = load(ckpt)
    assert meta["timesteps"] == 1536 and ppo.updates == 6
    assert len(meta["pretrain"]["episode_rewards"]) >= 1
    # The same statistics as an evaluation's, every update, across the resume, against timesteps.
    log = (project / "out" / "pretrain" / "training.csv").read_text().splitlines()
    assert log[0].startswith("timesteps,updates,") and "approx_kl" in log[0]
    assert [int(row.split(",")[0]) for row in log[1:]] == [256, 512, 768, 1024, 1280, 1536]
    assert list((project / "out" / "pretrain" / "tb").iterdir())  # the TensorBoard event files
    assert ">timesteps</text>" in (project / "pretrained" / "ppo-reward-curve.svg").read_text()

    # `contestkit eval` in the project starts the agent from the shipped checkpoint (init_checkpoint "auto").
    results = project / "results"
    proc = run(project, sys.executable, "-m", "contestkit", "eval", "Airstriker-Genesis", "Level1",
               "--runtime", "local", "--timestep-limit", "300", "--results-dir", str(results))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    stdout = (results / "agent-stdout.txt").read_text()
    assert f"fine-tuning from {ckpt}" in stdout, stdout[-2000:]
    assert f"initial weights sha256={ppo.weights_digest()}" in stdout, stdout[-2000:]


def _other_framework_checkpoint(path: Path) -> None:
    """A checkpoint file as the other template writes it (its suffix; content in its format)."""
    if CHECKPOINT_SUFFIX == ".pt":
        np.savez(
            path, w0=np.zeros(3, np.float32), meta=np.frombuffer(b'{"framework": "tensorflow"}', np.uint8)
        )
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as zf:  # torch.save writes a zip archive holding a pickle
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("unknown level", ["--levels", "unknown.csv"], "Unknown state 'Level9' for Airstriker-Genesis"),
        ("wrong header", ["--levels", "header.csv"], "the first line must be the header 'game,state'"),
        ("no envs", ["--levels", "air.csv", "--envs", "0"], "--envs must be at least 1"),
        ("other framework", ["--levels", "air.csv", "--out", "OTHER"], "checkpoint, but this is the"),
        ("other action set", ["--levels", "air.csv"], "trained with 7 actions, but this game has 12"),
    ],
)
def test_bad_input_is_one_sentence_and_the_checkpoint_survives(
    project: Path, case: str, args: list[str], message: str
) -> None:
    (project / "unknown.csv").write_text("game,state\nAirstriker-Genesis,Level9\n")
    (project / "header.csv").write_text("game,level\nAirstriker-Genesis,Level1\n")
    ckpt = project / PRETRAINED
    # An existing checkpoint, as a previous run leaves it (7 actions: the Sonic set).
    from agent.ppo import PPO

    PPO(Config(), OBS_SHAPE, 7).save(ckpt)
    if case == "other framework":
        other = project / "pretrained" / ("ppo.npz" if CHECKPOINT_SUFFIX == ".pt" else "ppo.pt")
        _other_framework_checkpoint(other)
        args = [other.name if a == "OTHER" else a for a in args]
        args[args.index(other.name)] = str(other)
        before = {other: sha(other), ckpt: sha(ckpt)}
    else:
        before = {ckpt: sha(ckpt)}
    proc = pretrain(project, *args, "--timesteps", "512")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    # The last line, and the only one of ours: TensorFlow may log its own start-up lines before it.
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert "Traceback" not in proc.stderr and sum(line.startswith("error: ") for line in err) == 1, err
    assert {p: sha(p) for p in before} == before  # nothing written over


def test_the_default_list_needs_the_sonic_roms_and_says_so(project: Path) -> None:
    from contestkit.env.games import rom_path

    if all(
        rom_path(g)
        for g in ("SonicTheHedgehog-Genesis", "SonicTheHedgehog2-Genesis", "SonicAndKnuckles3-Genesis")
    ):
        pytest.skip("the Sonic ROMs are imported here: the default list would train")
    proc = pretrain(project, "--timesteps", "512")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip()
    assert err.startswith("error: The contest's training list needs the ROMs of "), err
    assert "contestkit roms import" in err and len(err.splitlines()) == 1, err
    assert not (project / PRETRAINED).exists()


def test_closing_the_envs_with_a_step_reply_still_in_the_pipe(project: Path) -> None:
    """Ctrl-C can land between a step's send and its reply; closing then must not trip on that reply."""
    from agent.pretrain import Envs

    envs = Envs([("Airstriker-Genesis", "Level1")], 2, seed=0, cfg=Config())
    for conn in envs.conns:
        conn.send(("step", 0))  # never received, as when an interrupt ends the loop
    cpu = envs.close()
    assert cpu > 0
    assert not any(proc.is_alive() for proc in envs.procs)
