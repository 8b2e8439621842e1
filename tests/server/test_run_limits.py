"""server.yaml's level-run limits (``server/run_limits.py``): parsed once at start, with a warning
when the memory is lowered to what the host has; bad values are one sentence. The limits' effect
on real containers is in tests/eval/test_run_limits.py."""

from __future__ import annotations

import logging

import pytest

from contestkit import levelrun
from contestkit.errors import ContestkitError
from contestkit.server.config import load_config
from contestkit.server.db import Database
from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.run_limits import agent_limits, host_memory
from contestkit.server.scheduling import Scheduler
from tests.server.fake_level_runner import fake_level_runner


def test_the_defaults_and_the_memory_cap():
    limits, warnings = agent_limits(levelrun.CONTEST_MEMORY, levelrun.PIDS_LIMIT, None, None, host_bytes=64 * 2**30)
    assert (limits.memory, limits.pids, limits.out_bytes, limits.log_bytes) == ("56g", 1024, 10 * 2**30, 16 * 2**20)
    assert warnings == []
    capped, warnings = agent_limits("56g", 1024, None, None, host_bytes=23 * 2**30)
    assert capped.memory == f"{23 * 1024}m"
    assert warnings and "more than this host's 23.0 GiB" in warnings[0]


def test_server_yaml_limits_are_read_and_a_lowered_memory_is_a_warning_at_start(tmp_path, init_contest, caplog):
    too_much = f"{host_memory() // 2**30 + 64}g"
    data_dir = init_contest(tmp_path, [("Fake", "Level1")], extra_config={
        "agent_memory": too_much, "agent_pids_limit": 50, "agent_out_limit": "64m", "agent_log_limit": "2m",
    })  # fmt: skip
    config = load_config(data_dir)
    database = Database(config.database())
    try:
        with caplog.at_level(logging.WARNING, logger="contestkit.server.scheduling"):
            scheduler = Scheduler(database, config, FunctionExecutor(fake_level_runner))
        assert scheduler.limits.pids == 50
        assert scheduler.limits.out_bytes == 64 * 2**20 and scheduler.limits.log_bytes == 2 * 2**20
        assert scheduler.limits.memory == f"{host_memory() // 2**20}m"
        assert any(f"agent_memory {too_much} is more than this host's" in r.getMessage() for r in caplog.records)
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("agent_out_limit", "lots", "'agent_out_limit': 'lots' is not a size"),
        ("agent_log_limit", "-5m", "'agent_log_limit': '-5m' must be a positive size"),
        ("agent_pids_limit", 0, "'agent_pids_limit' must be at least 1"),
    ],
)
def test_a_bad_limit_is_one_sentence_at_load(tmp_path, init_contest, key, value, expected):
    data_dir = init_contest(tmp_path, [("Fake", "Level1")])
    (data_dir / "server.yaml").write_text((data_dir / "server.yaml").read_text() + f"{key}: {value}\n")
    with pytest.raises(ContestkitError, match=expected):
        load_config(data_dir)
