"""server.yaml's level-run limits (``server/queue/run_limits.py``): parsed once at start, with a warning
when the memory is lowered to what the host has; bad values are one sentence. The limits' effect
on real containers is in tests/eval/test_run_limits.py."""

from __future__ import annotations

import logging

import pytest

from contestkit.errors import ContestkitError
from contestkit.runs import levelrun
from contestkit.server.config import load_config
from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.queue.run_limits import agent_limits, host_memory
from contestkit.server.queue.scheduling import Scheduler
from contestkit.server.storage.db import Database
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
        with caplog.at_level(logging.WARNING, logger="contestkit.server.queue.scheduling"):
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
    data_dir = init_contest(tmp_path, [("Fake", "Level1")], extra_config={key: value})
    with pytest.raises(ContestkitError, match=expected):
        load_config(data_dir)


@pytest.mark.docker
def test_a_hostile_job_fails_with_its_reason_while_the_server_answers_and_another_team_finishes(
    make_contest, docker_api, toolkit_images, tmp_path
):
    """Two teams' jobs at once on the real Docker executor: one floods out/ past a small
    agent_out_limit, the other plays normally. The server answers throughout, the other team's job
    finishes, and the hostile one fails with the one-sentence reason."""
    import time
    import uuid

    import requests

    from tests.support.paths import GAME, REPO, STATE

    agents = REPO / "tests" / "agents"
    registry = "127.0.0.1:5999"
    images: list[str] = []

    def image(script: str, env: str, namespace: str) -> str:
        ctx = tmp_path / namespace
        ctx.mkdir()
        (ctx / "agent.py").write_text((agents / script).read_text())
        (ctx / "Dockerfile").write_text(f"FROM contestkit/agent:cpu\n{env}ADD agent.py /root/compo/agent.py\n")
        tag = f"{registry}/{namespace}/agent:{uuid.uuid4().hex[:8]}"
        for _ in docker_api.build(path=str(ctx), tag=tag, rm=True, decode=True):
            pass
        images.append(tag)
        return tag.split("/", 2)[2]

    contest = make_contest([(GAME, STATE)], evaluator=None, registry=registry, timestep_limit=6000,
                           extra_config={"parallel_jobs": 2, "agent_out_limit": "32m"})  # fmt: skip
    try:
        hostile_tag = image("hostile_agent.py", "ENV HOSTILE_MODE=out HOSTILE_MB=2048\n", "hostile")
        honest_tag = image("contest_doc_agent.py", "", "honest")
        contest.add_team("hostile", "hostile@example.org")
        contest.add_team("honest", "honest@example.org")
        hostile, honest = contest.session("hostile@example.org"), contest.session("honest@example.org")
        bad = hostile.post(contest.url + "/rest/job/start", json={"tag": hostile_tag}).json()
        good = honest.post(contest.url + "/rest/job/start", json={"tag": honest_tag}).json()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # the server answers all along
            assert requests.get(contest.url + "/rest/health", timeout=10).status_code == 200
            states = [
                http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["status"]
                for http, job in ((hostile, bad), (honest, good))
            ]
            if all(s in ("finished", "failed", "cancelled") for s in states):
                break
            time.sleep(0.5)
        bad_doc = contest.wait_job(hostile, bad["id"], timeout=30)
        good_doc = contest.wait_job(honest, good["id"], timeout=30)
        assert good_doc["status"] == "finished", good_doc
        assert bad_doc["status"] == "failed", bad_doc
        assert "more than 32 MiB into its out/ directory" in bad_doc["workers"][0]["error"]
    finally:
        for tag in images:
            docker_api.remove_image(tag, force=True)
