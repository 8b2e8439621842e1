"""server.yaml is read by the strict reader (contestkit.yamlconfig): duplicates, unknown keys and types,
each answered in one sentence with the line, at the top level and in nested mappings (kubernetes, phases)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contestkit.errors import UsageError
from contestkit.server.config import SETTINGS, ExecutorKind, ServerConfig, load_config
from contestkit.server.executors.kubernetes_settings import KUBERNETES_SETTINGS
from contestkit.yamlconfig import convert


def _data_dir(tmp_path: Path, extra: str = "") -> Path:
    ServerConfig(registry="127.0.0.1:5000", data_dir=tmp_path).save()
    path = tmp_path / "server.yaml"
    path.write_text(path.read_text() + extra)
    return path


def _line_of(path: Path, text: str, occurrence: int = 1) -> int:
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.startswith(text)]
    return numbers[occurrence - 1]


def test_a_key_set_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """What pasting a README block into an existing file produces: the last one no longer wins silently."""
    path = _data_dir(tmp_path, "# pasted from the docs:\nparallel_levels: 4\n")
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    first, second = _line_of(path, "parallel_levels:"), _line_of(path, "parallel_levels:", 2)
    assert str(err.value) == (
        f"{path}, line {second}: key 'parallel_levels' is set twice (first on line {first}); keep one of the two lines."
    )


def test_a_nested_key_set_twice_is_refused(tmp_path: Path) -> None:
    path = _data_dir(tmp_path)
    path.write_text(
        path.read_text().replace(
            "phases: {}", "phases:\n  leaderboard:\n    closes: 2030-01-01T00:00:00Z\n    closes: 2031-01-01T00:00:00Z"
        )
    )
    with pytest.raises(
        UsageError, match=r"line \d+: key 'phases.leaderboard.closes' is set twice \(first on line \d+\)"
    ):
        load_config(tmp_path)


def test_an_unknown_key_gets_the_nearest_valid_name(tmp_path: Path) -> None:
    path = _data_dir(tmp_path, "parralel_levels: 2\n")
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    line = _line_of(path, "parralel_levels")
    assert str(err.value) == f"{path}, line {line}: unknown key 'parralel_levels' (did you mean 'parallel_levels'?)."


def test_a_type_error_shows_an_example_of_that_key(tmp_path: Path) -> None:
    """``admins: host@...`` used to be answered with the cpusets example, ["0-3", "4-7"]."""
    path = _data_dir(tmp_path)
    path.write_text(path.read_text().replace("admins: []", "admins: host@example.com"))
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    message = str(err.value)
    assert message == (
        f"{path}, line {_line_of(path, 'admins:')}: key 'admins' must be a list of strings, "
        "e.g. `admins: [host@example.com]` (it is str 'host@example.com')."
    )
    assert "0-" not in message


def test_kubernetes_settings_are_read_with_their_lines(tmp_path: Path) -> None:
    path = _data_dir(tmp_path)
    path.write_text(
        path.read_text()
        .replace("executor: docker", "executor: kubernetes")
        .replace("kubernetes: null", "kubernetes:\n  remote_env_image: r/remote-env:1\n  gpus: two")
    )
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    assert str(err.value) == (
        f"{path}, line {_line_of(path, '  gpus:')}: key 'kubernetes.gpus' must be a whole number, "
        "e.g. `gpus: 0` (it is str 'two')."
    )


@pytest.mark.parametrize("table", [SETTINGS, KUBERNETES_SETTINGS], ids=["server.yaml", "kubernetes"])
def test_every_example_is_accepted_by_its_own_key(table: dict, tmp_path: Path) -> None:
    """An example a host copies from an error message must itself be accepted."""
    for setting in table.values():
        convert(setting, yaml.safe_load(f"{setting.name}: {setting.example}")[setting.name], "example")


def test_executor_is_one_of_its_kinds(tmp_path: Path) -> None:
    path = _data_dir(tmp_path)
    assert load_config(tmp_path).executor is ExecutorKind.DOCKER
    path.write_text(path.read_text().replace("executor: docker", "executor: slurm"))
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    assert str(err.value) == (
        f"{path}, line {_line_of(path, 'executor:')}: key 'executor' must be one of docker, kubernetes, "
        "e.g. `executor: docker` (it is str 'slurm')."
    )


def test_runtime_is_no_longer_a_setting(tmp_path: Path) -> None:
    """It was neither documented nor checked, and only its default ever worked: the server runs team
    images, which only the Docker runtime can. What every earlier `server init` wrote still loads."""
    path = _data_dir(tmp_path)
    assert "runtime" not in path.read_text()  # no longer written
    path.write_text(path.read_text() + "runtime: docker\n")
    assert load_config(tmp_path).executor is ExecutorKind.DOCKER
    path.write_text(path.read_text().replace("runtime: docker", "runtime: local"))
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    assert str(err.value).startswith(f"{path}, line {_line_of(path, 'runtime:')}: key 'runtime' is no longer read (")
    assert str(err.value).endswith("; remove that line.")


def test_the_configuration_page_documents_every_key() -> None:
    """docs/configuration-files.md has a table row for every key of the three tables the reader checks."""
    from contestkit.projects.config import KEYS

    page = (Path(__file__).parents[2] / "docs" / "configuration-files.md").read_text()
    rows = {cell for line in page.splitlines() if line.startswith("| `") for cell in line.split("|")[1].split(",")}
    documented = {cell.strip().strip("`") for cell in rows}
    missing = (set(KEYS) | set(SETTINGS) | set(KUBERNETES_SETTINGS)) - documented
    assert missing == set()


def test_a_typo_in_the_phases_gets_the_nearest_valid_name(tmp_path: Path) -> None:
    path = _data_dir(tmp_path)
    path.write_text(path.read_text().replace("phases: {}", "phases:\n  leaderboard:\n    quota: {per_dya: 3}"))
    with pytest.raises(UsageError) as err:
        load_config(tmp_path)
    assert str(err.value) == ("phases.leaderboard.quota: unknown key 'per_dya' (did you mean 'per_day'?).")
