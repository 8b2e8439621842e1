"""The team registry for real: Debian's docker-registry with the config ``server init`` writes, the
Docker engine, and the contest server pulling what teams push.

The first test needs only the registry binary; the others need a Docker engine (marked ``docker``;
they skip with a loud reason where none answers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from contestkit.client import registry
from contestkit.client.credentials import RegistryCredentials
from contestkit.errors import ContestkitError
from contestkit.server.config import load_config
from contestkit.server.contest.teams import rotate_registry_password

if TYPE_CHECKING:
    from tests.support.contest import Contest

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]


@pytest.fixture
def stack(tmp_path: Path, free_port, init_contest, server_process, registry_process, contest_of):  # type: ignore[no-untyped-def]
    """A contest whose server pulls each job's image from a real registry."""
    address, port = f"127.0.0.1:{free_port()}", free_port()
    data_dir = init_contest(tmp_path, LEVELS, registry=address, pull=True, server_url=f"http://127.0.0.1:{port}")
    registry = registry_process(data_dir / "registry" / "config.yml", address).start()
    server = server_process(data_dir, port=port).start()
    yield contest_of(data_dir, server, LEVELS), address
    server.kill()
    registry.stop()


def _bearer(contest: Any, username: str, password: str, *scopes: str) -> requests.Response:
    params = {"service": "contestkit-registry", "scope": list(scopes)}
    return requests.get(contest.url + "/rest/registry/token", params=params, auth=(username, password), timeout=30)


def test_each_team_has_its_own_registry_login(
    tmp_path: Path, free_port, init_contest, server_process, registry_process, contest_of
):
    address, port = f"127.0.0.1:{free_port()}", free_port()
    data_dir = init_contest(tmp_path, LEVELS, registry=address, server_url=f"http://127.0.0.1:{port}")
    registry = registry_process(data_dir / "registry" / "config.yml", address).start()
    try:
        contest = contest_of(data_dir, server_process(data_dir, port=port).start(), LEVELS)
        _, http = contest.team("reg")  # added while the registry runs: the realm reads the database
        cr = http.get(contest.url + "/rest/user").json()["cr"]
        assert cr["url"].startswith(address + "/") and cr["scheme"] == "http"
        v2 = f"http://{address}/v2/"
        # The registry takes no password itself: it sends clients to the contest server's realm.
        refused = requests.get(v2, auth=(cr["username"], cr["password"]))
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith(f'Bearer realm="{contest.url}/rest/registry/token"')
        token = _bearer(contest, cr["username"], cr["password"]).json()["token"]
        assert requests.get(v2, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert _bearer(contest, cr["username"], "wrong").status_code == 401
        assert requests.get(v2).status_code == 401
        config = load_config(data_dir)
        evaluator = _bearer(contest, config.evaluator_username, config.evaluator_registry_password).json()["token"]
        assert requests.get(v2, headers={"Authorization": f"Bearer {evaluator}"}).status_code == 200
        contest.server.kill()
    finally:
        registry.stop()


class Team:
    def __init__(self, contest: Contest, home: Path, cli: Any, base_env: Any, unique_team: Any) -> None:
        self.contest = contest
        self.cli = cli
        self.name, self.email = unique_team("dock")
        contest.add_team(self.name, self.email)
        self.env = base_env(
            XDG_CONFIG_HOME=str(home / "xdg"), DOCKER_CONFIG=str(home / "docker"), CONTESTKIT_POLL_SECONDS="0.1"
        )
        self.home = home
        login = self.run(
            "login", "--server", contest.url, "--email", self.email, "--password-stdin", input=contest.password + "\n",
        )  # fmt: skip
        assert login.returncode == 0, login.stderr

    def http(self) -> requests.Session:
        """An HTTP session of this team with the contest server (its own login, not the CLI's)."""
        return self.contest.session(self.email)

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 120) -> Any:
        return self.cli(*args, env=self.env, input=input, cwd=cwd, timeout=timeout)


@pytest.fixture
def make_team(cli, base_env, unique_team):  # type: ignore[no-untyped-def]
    """``make_team(contest, home)``: a team of ``contest``, logged in, whose config lives under ``home``."""
    return lambda contest, home: Team(contest, home, cli, base_env, unique_team)


@pytest.mark.docker
def test_push_submit_wait_and_leaderboard_end_to_end(stack, tmp_path: Path, make_team, tiny_image, docker_client):
    engine = docker_client
    contest, address = stack
    team = make_team(contest, tmp_path / "a")
    local = tiny_image(engine, tmp_path, f"e2e-{team.name}:score-42")
    pulled: list[str] = []
    try:
        logged = team.run("registry", "login")
        assert logged.returncode == 0, logged.stderr
        assert "Login Succeeded" in logged.stdout
        docker_config = json.loads((tmp_path / "a" / "docker" / "config.json").read_text())
        assert address in docker_config["auths"]  # `docker push` by hand works too

        listed = json.loads(team.run("registry", "list", "--json").stdout)
        assert listed["repositories"] == {}

        submitted = team.run("submit", local, "--wait")
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        target = f"{address}/{team.name}/e2e-{team.name}:score-42"
        assert f"Pushed {target} (sha256:" in submitted.stdout
        # The server pulled the image by digest (the TEST DOUBLE evaluator found its tag in the engine).
        assert "score 43.00" in submitted.stdout and "Fake/Level2" in submitted.stdout
        job = json.loads(team.run("jobs", "--json").stdout)
        assert job["status"] == "finished" and job["digest"].startswith("sha256:")
        pulled.append(f"{target.rsplit(':', 1)[0]}@{job['digest']}")

        listed = json.loads(team.run("registry", "list", "--json").stdout)
        assert listed["repositories"] == {f"{team.name}/e2e-{team.name}": ["score-42"]}
        board = json.loads(team.run("leaderboard", "--json").stdout)
        assert [(r["name"], r["score"]) for r in board["leaderboard"]] == [(team.name, 43.0)]

        # A second team sees none of it in its own namespace.
        other = make_team(contest, tmp_path / "b")
        assert json.loads(other.run("registry", "list", "--json").stdout)["repositories"] == {}
        assert json.loads(other.run("leaderboard", "--json").stdout)["leaderboard"][0]["name"] == team.name

        # --json: stdout is the one JSON document; push progress and notes go to stderr.
        again = team.run("submit", local, "--wait", "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        document = json.loads(again.stdout)
        assert document["status"] == "finished" and document["score"] == 43.0
        assert f"Pushed {target}" in again.stderr and "queued" in again.stderr
    finally:
        for reference in [local, f"{address}/{team.name}/e2e-{team.name}:score-42", *pulled]:
            try:
                engine.images.remove(reference, force=True)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


def _doctor_registry_check(team: Any, where: Path) -> dict[str, Any]:
    done = team.run("doctor", "--json", "--dir", str(where), timeout=180)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return checks["registry login"]


@pytest.mark.docker
def test_doctor_after_registry_login_reports_the_team_registry(stack, tmp_path: Path, make_team, docker_client):
    """Issue 9 item 4: doctor reads the store `registry login` writes (it used to read the config)."""
    contest, address = stack
    team = make_team(contest, tmp_path / "a")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "contestkit.yaml").write_text(f"name: agent\nregistry: {address}/{team.name}\n")
    (project / "Dockerfile").write_text("FROM contestkit/agent:cpu\n")
    before = _doctor_registry_check(team, project)
    assert before["status"] == "fail" and "contestkit registry login" in before["fix"]

    logged = team.run("registry", "login", "--no-docker-config")  # the engine's login only, not the CLI's
    assert logged.returncode == 0, logged.stderr
    for where in (project, tmp_path):  # in the project, and outside any project
        after = _doctor_registry_check(team, where)
        assert after["status"] == "ok", after
        assert f"{address}/{team.name}" in after["summary"]


@pytest.mark.docker
def test_registry_failures_are_sentences(stack, tmp_path: Path, make_team, tiny_image, docker_client):
    engine = docker_client
    contest, address = stack
    team = make_team(contest, tmp_path / "a")
    missing = team.run("push", "not-built-here:v1")
    assert missing.returncode == 2
    assert "No local image to push" in missing.stderr and "contestkit build" in missing.stderr

    # The organisers rotate the team's registry password: the old one is refused (through the engine,
    # which asks the realm), and `contestkit registry login` picks up the new one from the server.
    stale = RegistryCredentials.from_user(team.http().get(contest.url + "/rest/user").json())
    rotate_registry_password(contest.data_dir, email=team.email)
    with pytest.raises(ContestkitError) as refused:
        registry.login(stale, client=engine)
    assert str(refused.value).startswith(f"The registry {address} refused your team's credentials (HTTP 401)")
    local = tiny_image(engine, tmp_path, f"deny-{team.name}:v1")
    try:
        with pytest.raises(ContestkitError) as push_refused:
            registry.tag(local, f"{stale.url}/deny-{team.name}:v1", client=engine)
            registry.push(f"{stale.url}/deny-{team.name}:v1", stale, client=engine)
        assert "refused the push" in str(push_refused.value) and "contestkit registry login" in str(push_refused.value)
        relogged = team.run("registry", "login", "--no-docker-config")
        assert relogged.returncode == 0, relogged.stderr
        push = team.run("push", local)
        assert push.returncode == 0, push.stdout + push.stderr
        assert "Traceback" not in push.stderr
    finally:
        for reference in (local, f"{address}/{team.name}/deny-{team.name}:v1"):
            try:
                engine.images.remove(reference, force=True)
            except Exception:  # noqa: BLE001
                pass


@pytest.mark.docker
def test_a_job_for_an_image_that_was_never_pushed_fails_with_the_reason(stack, tmp_path: Path, docker_client):
    contest, _ = stack
    _, http = contest.team("nopush")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "ghost:v1"}).json()
    done = contest.wait_job(http, job["id"], timeout=60)
    assert done["status"] == "failed"
    assert "push it first" in done["error"] or "Pulling" in done["error"], done["error"]


@pytest.mark.docker
@pytest.mark.slow
def test_submit_wait_with_the_real_docker_evaluation(
    tmp_path: Path,
    toolkit_images,
    free_port,
    init_contest,
    make_team,
    server_process,
    registry_process,
    contest_of,
    docker_client,
):
    """The whole loop with no test double: a project made by `contestkit new`, built by
    `contestkit build`, pushed to the team registry by `contestkit submit --wait`, pulled by the
    server and evaluated by contestkit.runs.evaluation in remote-env + agent containers; its score
    reaches the leaderboard."""
    engine = docker_client
    address, port = f"127.0.0.1:{free_port()}", free_port()
    data_dir = init_contest(
        tmp_path,
        [("Airstriker-Genesis", "Level1")],
        registry=address,
        pull=True,
        evaluator=None,
        timestep_limit=4500,
        wallclock_limit=300,
        server_url=f"http://127.0.0.1:{port}",
    )  # 4,500: one full episode
    registry = registry_process(data_dir / "registry" / "config.yml", address).start()
    server = server_process(data_dir, port=port).start()
    contest = contest_of(data_dir, server, [("Airstriker-Genesis", "Level1")])
    team = make_team(contest, tmp_path / "team")
    # As a contestant does it: scaffold, build, submit and wait.
    made = team.run("new", "rand-agent", "--template", "random", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stdout + made.stderr
    project = tmp_path / "rand-agent"
    built = team.run("build", "v1", cwd=project, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    local = "rand-agent:v1"
    target = f"{address}/{team.name}/rand-agent:v1"
    try:
        submitted = team.run("submit", "v1", "--wait", cwd=project, timeout=600)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr + server.log()
        job = json.loads(team.run("jobs", "--json").stdout)
        assert job["status"] == "finished", job
        worker = job["workers"][0]
        assert worker["episodes"] >= 1 and worker["timesteps"] == 4500
        assert job["score"] == pytest.approx(worker["score"])
        level_dir = data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Airstriker-Genesis-Level1"
        assert (level_dir / "monitor.csv").read_text().count("\n") >= 2
        summary = json.loads((level_dir / "summary.json").read_text())
        assert summary["score"] == pytest.approx(job["score"])
        # The attempt's drawn seed is the one the level ran with (server.seeds), and the server drew its curve.
        assert isinstance(job["seed"], int) and summary["seed"] == job["seed"] == worker["seed"]
        assert (level_dir / "reward-curve.svg").read_text().startswith("<svg")
        logs = team.run("jobs", "logs", str(job["id"]), "--json")
        assert logs.returncode == 0 and {e["file"].rsplit("/", 1)[1] for e in json.loads(logs.stdout)["logs"]}
        board = json.loads(team.run("leaderboard", "--json").stdout)["leaderboard"]
        assert board[0]["name"] == team.name and board[0]["score"] == pytest.approx(job["score"])
    finally:
        server.kill()
        registry.stop()
        for reference in (local, target):
            try:
                engine.images.remove(reference, force=True)
            except Exception:  # noqa: BLE001
                pass
