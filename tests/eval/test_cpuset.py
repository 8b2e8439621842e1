"""The --cpuset list format: what it accepts, and one clear sentence for what it does not."""

from __future__ import annotations

import pytest

from contestkit.errors import UsageError
from contestkit.runs import cpuset
from contestkit.runtime.base import Runtime


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", (0,)), ("0-3", (0, 1, 2, 3)), ("3,1", (1, 3)), ("0-1,6", (0, 1, 6)), (" 2 , 4-5 ", (2, 4, 5))],
)
def test_parse_accepts_linux_cpuset_lists(text, cpus):
    assert cpuset.parse(text, allowed=range(8)) == cpus


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("x", "is not a CPU list: write it like 0-3 or 1,3 (this machine's are 0-7)"),
        ("1-", "is not a CPU list"),
        ("", "is not a CPU list"),
        ("3-1", "the range 3-1 runs backwards; write 1-3"),
        ("6-9", "CPU 8-9 is not available here (this machine's are 0-7)"),
    ],
)
def test_parse_refuses_with_one_sentence(text, says):
    with pytest.raises(UsageError) as err:
        cpuset.parse(text, allowed=range(8))
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_describe_is_the_shortest_list():
    assert cpuset.describe([5, 0, 1, 2]) == "0-2,5"
    assert cpuset.describe([3]) == "3"
    assert cpuset.describe([1, 3, 4]) == "1,3-4"


def test_default_allowed_set_is_this_process_affinity():
    mine = cpuset.available()
    assert mine and cpuset.parse(cpuset.describe(mine)) == tuple(sorted(mine))


# -- CpuSet: the value a level-run carries, parsed once ---------------------------------------------


def test_a_cpu_set_is_a_value_that_prints_as_its_shortest_list():
    cpus = cpuset.CpuSet.parse("3,0-2", allowed=range(8))
    assert cpus == cpuset.CpuSet((0, 1, 2, 3)) and str(cpus) == "0-3" and list(cpus) == [0, 1, 2, 3]
    with pytest.raises(UsageError, match="cpusets entry 'x' is not a CPU list"):
        cpuset.CpuSet.parse("x", allowed=range(8), what="cpusets entry")


def test_a_level_run_spec_parses_its_cpuset_once_and_carries_the_value(tmp_path, monkeypatch):
    """The text used to be parsed by eval's plan, again for summary.json and again by the local runtime."""
    from contestkit.env.games import resolve_level
    from contestkit.runs import evaluation
    from contestkit.runs.levelrun import LevelRunSpec

    calls = []
    real = cpuset.parse
    monkeypatch.setattr(cpuset, "parse", lambda *a, **k: calls.append(a) or real(*a, **k))  # counts, then parses
    mine = min(cpuset.available())
    agent = tmp_path / "agent.py"
    agent.write_text("")
    spec = LevelRunSpec(game="Airstriker-Genesis", state="Level1", agent=str(agent), cpuset=str(mine))
    assert spec.cpuset == cpuset.CpuSet((mine,))
    request = evaluation.EvalRequest(run=spec, runtime=Runtime.LOCAL, results_dir=tmp_path / "r")
    _, planned = evaluation.plan(request, resolve_level("Airstriker-Genesis", "Level1", check_rom=False))
    assert planned.cpuset is spec.cpuset and planned.replace(seed=1).cpuset is spec.cpuset
    assert len(calls) == 1
