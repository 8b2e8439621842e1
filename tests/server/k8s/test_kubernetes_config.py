"""``executor: kubernetes`` in server.yaml: read, checked when the server starts, and chosen by load_executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from contestkit.errors import ContestkitError, UsageError
from contestkit.server.config import ServerConfig, load_config
from contestkit.server.executors.configured import load_executor


def _write(tmp_path: Path, **values: object) -> Path:
    ServerConfig(registry="127.0.0.1:5000", data_dir=tmp_path, **values).save()  # type: ignore[arg-type]
    return tmp_path


def test_the_docker_executor_stays_the_default(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path))
    assert config.executor == "docker" and config.kubernetes is None
    assert load_executor(config).name == "docker"


def test_kubernetes_settings_are_checked_when_the_config_is_read(tmp_path: Path) -> None:
    _write(tmp_path, executor="kubernetes", kubernetes={"remote_env_image": "r/remote-env:1", "namespce": "x"})
    with pytest.raises(
        UsageError, match=r"server.yaml, line \d+: unknown key 'kubernetes.namespce' \(did you mean 'namespace'\?\)"
    ):
        load_config(tmp_path)
    _write(tmp_path, executor="kubernetes")
    with pytest.raises(UsageError, match="needs 'remote_env_image'"):
        load_config(tmp_path)
    _write(tmp_path, executor="slurm")
    with pytest.raises(UsageError, match="key .executor. must be one of docker, kubernetes"):
        load_config(tmp_path)


def test_load_executor_says_in_one_sentence_when_no_cluster_answers(tmp_path: Path) -> None:
    missing = tmp_path / "no-kubeconfig"
    settings = {"remote_env_image": "r/remote-env:1", "kubeconfig": str(missing)}
    _write(tmp_path, executor="kubernetes", kubernetes=settings)
    config = load_config(tmp_path)
    assert config.kubernetes == settings
    with pytest.raises(ContestkitError, match="Cannot reach the Kubernetes cluster") as caught:
        load_executor(config)
    assert "\n" not in str(caught.value)
