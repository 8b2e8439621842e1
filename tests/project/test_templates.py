"""Every template works the moment it is created: it evaluates, and its own tests pass.

This is the contestant's first ten minutes, run for real: ``contestkit new x --template T``,
``cd x``, ``contestkit eval Airstriker-Genesis Level1 --runtime local --timestep-limit 6000``, then
the project's own ``pytest``. Slow (minutes), so marked ``templates``. The frameworks must be
installed on the host (CPU builds: ``torch==2.13.0``, ``tensorflow-cpu==2.21.0``); without one
the test is skipped with the install line, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = {
    "pytorch": ("torch", "pip install torch==2.13.0"),
    "tf": ("tensorflow", "pip install tensorflow-cpu==2.21.0"),
    "random": (None, ""),
}

pytestmark = [pytest.mark.templates, pytest.mark.slow]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The checkout on the path, as an installed contestkit would be (CI may run from a clone).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _need_framework(template: str) -> None:
    module, install = FRAMEWORK[template]
    if module and importlib.util.find_spec(module) is None:
        message = f"the {template} template needs {module}: {install}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _run(cmd: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.mark.timeout(3600)  # an eval of 6,000 timesteps, then the project's tests, which pretrain
@pytest.mark.parametrize("template", ["random", "pytorch", "tf"])
def test_a_new_project_evaluates_and_passes_its_own_tests(template: str, tmp_path: Path) -> None:
    _need_framework(template)
    ck = [sys.executable, "-m", "contestkit"]
    _run([*ck, "new", "x", "--template", template], cwd=tmp_path, timeout=120)
    project = tmp_path / "x"

    _run([*ck, "eval", "Airstriker-Genesis", "Level1", "--runtime", "local", "--timestep-limit", "6000"],
         cwd=project, timeout=600)  # fmt: skip
    monitors = list((project / "results").rglob("monitor.csv"))
    assert len(monitors) == 1, monitors
    with monitors[0].open() as fh:
        episodes = list(csv.DictReader(fh))
    assert len(episodes) >= 3, episodes  # Airstriker episodes last ~400 timesteps
    assert sum(int(float(e["l"])) for e in episodes) <= 6000
    if template != "random":
        out = monitors[0].parent / "out" / "checkpoints"
        assert any(out.glob("latest.*")), f"no checkpoint in {out}"

    # The project's tests include a short pretraining and two short evaluations: minutes on a loaded CPU.
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, timeout=2400)
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize(("template", "other"), [("pytorch", "tf"), ("tf", "pytorch")])
def test_pretraining_refuses_the_other_frameworks_checkpoint(template: str, other: str, tmp_path: Path) -> None:
    """A real checkpoint of one template, given to the other: one sentence, and the file is kept."""
    _need_framework(template)
    _need_framework(other)
    ck = [sys.executable, "-m", "contestkit"]
    for name in (template, other):
        _run([*ck, "new", name, "--template", name], cwd=tmp_path, timeout=120)
    foreign = tmp_path / ("ppo.npz" if other == "tf" else "ppo.pt")
    env = dict(_env(), PYTHONPATH=os.pathsep.join((str(tmp_path / other), _env()["PYTHONPATH"])))
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from agent.config import Config; "
         "from agent.ppo import PPO; PPO(Config(), (4, 84, 84), 12).save(Path(sys.argv[1]))", str(foreign)],
        cwd=tmp_path / other, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = foreign.read_bytes()
    project = tmp_path / template
    (project / "air.csv").write_text("game,state\nAirstriker-Genesis,Level1\n")
    env = dict(_env(), PYTHONPATH=os.pathsep.join((str(project), _env()["PYTHONPATH"])))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.pretrain", "--levels", "air.csv", "--timesteps", "512", "--out", str(foreign)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    framework = {"pytorch": "PyTorch", "tf": "TensorFlow"}[other]
    assert proc.stderr.strip().startswith(f"error: {foreign} is a {framework} checkpoint"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert foreign.read_bytes() == before


SAME_NUMBERS = """
import json
import numpy as np
from agent.config import Config
from agent.ppo import PPO

cfg = Config(seed=3, n_steps=64, n_minibatches=2, n_epochs=2, threads=1)
ppo = PPO(cfg, (4, 84, 84), 12)
rng = np.random.default_rng(0)
obs = rng.integers(0, 255, (8, 4, 84, 84), dtype=np.uint8)
out = {}
out["actions"], out["log_probs"], out["values"] = (x.tolist() for x in ppo.act_batch(obs))
for t in range(64):
    action, log_prob, value = ppo.act(obs[t % 8])
    ppo.rollout.add(obs[t % 8], action, log_prob, value)
    ppo.rollout.rewards[t] = float(rng.random())
    ppo.timesteps += 1
ppo.update(0.0)
out["actions2"], out["log_probs2"], out["values2"] = (x.tolist() for x in ppo.act_batch(obs))
print(json.dumps(out))
"""


def test_both_frameworks_compute_the_same_numbers_for_the_same_seed(tmp_path: Path) -> None:
    """Same seed, same observations: the same initial network, the same actions, the same update."""
    import json

    import numpy as np

    _need_framework("pytorch")
    _need_framework("tf")
    ck = [sys.executable, "-m", "contestkit"]
    numbers = {}
    for template in ("pytorch", "tf"):
        _run([*ck, "new", template, "--template", template], cwd=tmp_path, timeout=120)
        project = tmp_path / template
        env = dict(_env(), PYTHONPATH=os.pathsep.join((str(project), _env()["PYTHONPATH"])))
        proc = subprocess.run([sys.executable, "-c", SAME_NUMBERS], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        numbers[template] = json.loads(proc.stdout.strip().splitlines()[-1])
    torch_, tf_ = numbers["pytorch"], numbers["tf"]
    assert torch_["actions"] == tf_["actions"] and torch_["actions2"] == tf_["actions2"]
    for key in ("log_probs", "values"):
        np.testing.assert_allclose(torch_[key], tf_[key], atol=1e-5)
    # After one update (4 Adam steps): rounding, not a different algorithm.
    np.testing.assert_allclose(torch_["log_probs2"], tf_["log_probs2"], atol=1e-4)
    np.testing.assert_allclose(torch_["values2"], tf_["values2"], atol=1e-3, rtol=1e-4)
