"""The executor a contest's server.yaml configures: ``executor: kubernetes``, ``evaluator: MODULE:FUNCTION``, or Docker.

Why a module of its own: choosing one needs every implementation, and every implementation needs
the interface in ``executors``; kept apart, neither imports the other's importer.
"""

from __future__ import annotations

from contestkit.server.config import ExecutorKind, ServerConfig
from contestkit.server.executors import Executor
from contestkit.server.executors.docker import DockerExecutor
from contestkit.server.executors.function import FunctionExecutor, load_level_function
from contestkit.server.executors.pull import RegistryAccount


def load_executor(config: ServerConfig) -> Executor:
    """The executor server.yaml configures: ``executor: kubernetes``, ``evaluator: MODULE:FUNCTION``, or Docker."""
    if config.executor == ExecutorKind.KUBERNETES:
        from contestkit.server.executors.kubernetes import executor_from_config

        return executor_from_config(config)

    account = (
        RegistryAccount(config.evaluator_username, config.evaluator_registry_password, config.pull_retry_seconds)
        if config.pull_images
        else None
    )
    if config.evaluator:
        return FunctionExecutor(load_level_function(config.evaluator), pull_with=account)
    return DockerExecutor(pull_with=account)
