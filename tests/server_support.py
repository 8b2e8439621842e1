"""Real parts for the contest server and client tests: a server process, a registry, PostgreSQL.

Nothing here is mocked except one thing, clearly marked below: ``fake_level_runner``, a TEST DOUBLE
of the per-level evaluation (the real one runs an emulator and two containers for hours). It is a
small real level runner in-process: it steps a fake game through the job's timestep budget, writes
``monitor.csv`` and ``summary.json`` like the real evaluation, reports progress and honours cancel,
so the server's queue, worker, recovery and scoring code runs for real around it.

The server under test is the real CLI (``python -m contestkit server run``) in a subprocess on a
free port, with a real SQLite file (or a throwaway PostgreSQL cluster); the registry is Debian's
``docker-registry`` binary with the configuration ``contestkit server init`` writes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
LevelsT = list[tuple[str, str]]
FAKE_EVALUATOR = "tests.server_support:fake_level_runner"
PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m contestkit ARGS`` as a user would; output is captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "contestkit", *args],
        env=env or base_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
    )


# -- TEST DOUBLE: the per-level evaluation --------------------------------------------------------


@dataclass
class FakeProgress:
    timesteps: int
    timestep_limit: int
    episodes: int
    elapsed: float
    eta_seconds: float | None


@dataclass
class FakeResult:
    score: float | None
    episodes: int
    timesteps: int
    ok: bool
    error: str | None
    summary: dict[str, Any] = field(default_factory=dict)


EPISODE_LENGTH = 10


def fake_level_runner(task: Any, on_progress: Any, cancel: threading.Event) -> FakeResult:
    """TEST DOUBLE of ``contestkit.evaluation.evaluate_level``: a deterministic fake game.

    - every episode lasts 10 timesteps; its reward is the number in an image tag ``score-N`` (else
      10), plus 0, 1, 2 in turn, so a level's score is N + 1 for episodes in multiples of three;
    - the level takes ``CK_FAKE_LEVEL_SECONDS`` (default 0.3 s) to use the whole timestep budget,
      or ``CK_FAKE_SLOW_SECONDS`` (default 5 s) when the tag ends in ``slow``;
    - state ``Crash`` raises, ``NoEpisodes`` ends with no finished episode, ``Slow`` ignores the
      wall-clock budget until cancelled (for the server's watchdog);
    - each call appends "job idx state" to ``CK_FAKE_RUN_LOG`` when set, so tests can count re-runs;
    - summary.json also records the CPU set the server lent the level and when it ran.
    """
    if os.environ.get("CK_FAKE_RUN_LOG"):
        with open(os.environ["CK_FAKE_RUN_LOG"], "a", encoding="utf-8") as fh:
            fh.write(f"{task.job_id} {task.index} {task.state}\n")
    if task.state == "Crash":
        raise RuntimeError("the fake agent crashed on purpose")
    base, slow = _score_of(task.image)
    seconds = float(os.environ.get("CK_FAKE_SLOW_SECONDS" if slow else "CK_FAKE_LEVEL_SECONDS", "5" if slow else "0.3"))
    limit = task.timestep_limit
    step_sleep = seconds / max(1, limit)
    results = Path(task.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    rewards: list[float] = []
    start = time.monotonic()
    started_at = time.time()
    timesteps = 0
    with (results / "monitor.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["r", "l", "t"])
        while not cancel.is_set():
            if task.state != "Slow" and timesteps >= limit:
                break
            time.sleep(step_sleep if task.state != "Slow" else 0.05)
            timesteps += 1
            if timesteps % EPISODE_LENGTH == 0 and task.state != "NoEpisodes":
                reward = base + len(rewards) % 3
                rewards.append(reward)
                writer.writerow([reward, EPISODE_LENGTH, round(time.monotonic() - start, 3)])
                fh.flush()
            elapsed = time.monotonic() - start
            rate = timesteps / elapsed if elapsed > 0 else 0.0
            eta = (limit - timesteps) / rate if rate and timesteps < limit else None
            on_progress(FakeProgress(timesteps, limit, len(rewards), elapsed, eta))
    score = sum(rewards) / len(rewards) if rewards else None
    summary = {"game": task.game, "state": task.state, "episodes": len(rewards), "timesteps": timesteps, "score": score,
               "cpuset": getattr(task, "cpuset", None), "started_at": started_at, "ended_at": time.time()}  # fmt: skip
    (results / "summary.json").write_text(json.dumps(summary))
    if cancel.is_set():
        return FakeResult(score, len(rewards), timesteps, False, "cancelled", summary)
    if not rewards:
        return FakeResult(None, 0, timesteps, False, "the agent finished no episode", summary)
    return FakeResult(score, len(rewards), timesteps, True, None, summary)


def _score_of(image: str) -> tuple[float, bool]:
    """(N of a ``score-N`` tag, whether the tag asks for a slow level: ``...-slow``).

    A pulled ``repo@sha256:`` image is looked up in the engine, which also proves that the server
    really pulled it from the registry."""
    tags = [image]
    if "@" in image:
        import docker

        client = docker.from_env()
        try:
            tags = client.images.get(image).tags
        finally:
            client.close()
    base, slow = 10.0, False
    for name in tags:
        tag = name.rsplit(":", 1)[-1]
        slow = slow or tag.endswith("slow")
        match = re.match(r"score-(\d+(?:\.\d+)?)", tag)
        if match:
            base = float(match.group(1))
    return base, slow


# -- the contest server as a subprocess ----------------------------------------------------------


class ServerProcess:
    """``contestkit server run`` on a free port; ``kill()`` is SIGKILL (a crash), ``stop()`` SIGTERM."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or base_env()
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contestkit",
                "server",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/rest/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


@dataclass
class Contest:
    """A contest data directory with its server running, and a way to log teams in."""

    data_dir: Path
    server: ServerProcess
    levels: list[tuple[str, str]]

    @property
    def url(self) -> str:
        return self.server.url

    def add_team(self, name: str, email: str, password: str = PASSWORD, *, via_cli: bool = False) -> None:
        """Add a team with ``contestkit server add-team`` or, quicker, the function behind it."""
        if via_cli:
            result = cli(
                "server",
                "add-team",
                name,
                "--email",
                email,
                "--password-stdin",
                "--data-dir",
                str(self.data_dir),
                input=password + "\n",
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return
        from contestkit.server.admin import add_team

        add_team(self.data_dir, name=name, email=email, password=password)

    def team(self, prefix: str = "team") -> tuple[str, requests.Session]:
        """A new team, logged in: (its registry namespace, an HTTP session with its cookie)."""
        name, email = unique_team(prefix)
        self.add_team(name, email)
        return name, self.session(email)

    def session(self, email: str, password: str = PASSWORD) -> requests.Session:
        http = requests.Session()
        response = http.post(self.url + "/rest/login", json={"email": email, "password": password}, timeout=30)
        assert response.status_code == 200, response.text
        return http

    def wait_job(
        self,
        http: requests.Session,
        job_id: int,
        statuses: tuple[str, ...] = ("finished", "failed", "cancelled"),
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = http.get(f"{self.url}/rest/job/status/{job_id}", timeout=10).json()
            if doc.get("status") in statuses:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not reach {statuses}: {doc}\n{self.server.log()}")


def write_levels(path: Path, levels: list[tuple[str, str]]) -> Path:
    path.write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in levels))
    return path


def init_contest(
    tmp: Path,
    levels: list[tuple[str, str]],
    *,
    registry: str = "127.0.0.1:5000",
    database_url: str | None = None,
    evaluator: str | None = FAKE_EVALUATOR,
    pull: bool = False,
    timestep_limit: int = 300,
    wallclock_limit: float = 60,
    extra_config: dict[str, Any] | None = None,
    server_url: str | None = None,
) -> Path:
    """``contestkit server init``; ``server_url`` is where the registry sends clients for tokens."""
    data_dir = tmp / "contest"
    args = [
        "server",
        "init",
        "--data-dir",
        str(data_dir),
        "--registry",
        registry,
        "--levels",
        str(write_levels(tmp / "levels.csv", levels)),
        "--timestep-limit",
        str(timestep_limit),
        "--wallclock-limit",
        str(wallclock_limit),
        "--pull" if pull else "--no-pull",
    ]
    if evaluator:
        args += ["--evaluator", evaluator]
    if database_url:
        args += ["--database-url", database_url]
    if server_url:
        args += ["--server-url", server_url]
    result = cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    if extra_config:
        import yaml

        path = data_dir / "server.yaml"
        config = yaml.safe_load(path.read_text())
        config.update(extra_config)
        path.write_text(yaml.safe_dump(config))
    return data_dir


class ContestFactory:
    """Makes contests under one directory and kills their servers when the fixture ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[ServerProcess] = []

    def __call__(self, levels: list[tuple[str, str]], *, env: dict[str, str] | None = None, **options: Any) -> Contest:
        tmp = self.root / f"contest-{len(self.servers)}"
        tmp.mkdir(parents=True)
        data_dir = init_contest(tmp, levels, **options)
        server = ServerProcess(data_dir, env=env).start()
        self.servers.append(server)
        return Contest(data_dir=data_dir, server=server, levels=levels)

    def close(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def make_contest(tmp_path: Path) -> Iterator[ContestFactory]:
    """Factory: ``make_contest(levels, **init_options)`` -> a running Contest of its own."""
    factory = ContestFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def make_module_contest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContestFactory]:
    """The same, for a contest shared by a module's tests (each test uses its own teams)."""
    factory = ContestFactory(tmp_path_factory.mktemp("contests"))
    yield factory
    factory.close()


_team_counter = iter(range(1, 1_000_000))


def unique_team(prefix: str = "team") -> tuple[str, str]:
    """A team name and email no other test of this process uses."""
    n = next(_team_counter)
    return f"{prefix}{n}", f"{prefix}{n}@example.org"


# -- a real registry -----------------------------------------------------------------------------


class RegistryProcess:
    """Debian's ``docker-registry`` with the configuration that ``contestkit server init`` wrote."""

    def __init__(self, config_path: Path, address: str) -> None:
        self.config_path = config_path
        self.address = address
        self.log_path = config_path.parent / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> RegistryProcess:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.skip(
                "REGISTRY TESTS SKIPPED: Debian's docker-registry is not installed (apt-get install docker-registry)"
            )
        self.proc = subprocess.Popen(
            [binary, "serve", str(self.config_path)], stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()}")
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=1).status_code == 401:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def docker_engine() -> Any:
    """A Docker client whose engine answers, or a loud skip (a failure under CONTESTKIT_REQUIRE_DOCKER=1,
    the convention of docker_support.py, so CI cannot pass with these tests silently skipped)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001
        message = f"DOCKER TESTS NOT RUN: no Docker engine answers ({exc}); start dockerd to run them"
        if os.environ.get("CONTESTKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{message} (CONTESTKIT_REQUIRE_DOCKER=1 says an engine was expected)", pytrace=False)
        pytest.skip(message)


def tiny_image(client: Any, tmp: Path, name: str) -> str:
    """A one-file image made without any base image or network (``docker import`` of a tarball)."""
    import tarfile

    rootfs = tmp / f"rootfs-{name.replace(':', '-').replace('/', '-')}"
    rootfs.mkdir(parents=True, exist_ok=True)
    (rootfs / "agent.txt").write_text(f"agent {name} {time.time()}\n")
    tar_path = rootfs.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs / "agent.txt", arcname="agent.txt")
    repository, tag = name.rsplit(":", 1)
    client.api.import_image(src=str(tar_path), repository=repository, tag=tag)
    return name


# -- schema checks shared by the SQLite and PostgreSQL tests --------------------------------------


def check_schema(database: Any) -> None:
    """Every column the ORM maps exists after the migrations ran: the two cannot drift apart."""
    from sqlalchemy import inspect

    from contestkit.server.db import Base

    inspector = inspect(database.engine)
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert {c.name for c in table.columns} <= columns, table.name


def check_one_active_job_per_team(database: Any) -> None:
    """The database itself refuses a second queued/running job for a team (no race can get past it)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO teams (id, name, email, password_hash, namespace, registry_username, created_at) "
                "VALUES (1, 'a', 'a@x.org', 'h', 'a', 'a', 0)"
            )
        )
        insert = text(
            "INSERT INTO jobs (team_id, tag, image, status, created_at, queued_at, timestep_limit, wallclock_limit) "
            "VALUES (1, 'v', 'i', :status, 0, 0, 1, 1)"
        )
        conn.execute(insert, {"status": "finished"})
        conn.execute(insert, {"status": "finished"})
        conn.execute(insert, {"status": "running"})
    with pytest.raises(IntegrityError), database.engine.begin() as conn:
        conn.execute(insert, {"status": "queued"})


# -- a throwaway PostgreSQL cluster --------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary directory for this test run; yields a base URL.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user that
    Debian's package creates.
    """
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not postgres:
        pytest.skip("POSTGRES TESTS SKIPPED: PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("POSTGRES TESTS SKIPPED: the psycopg driver is not installed (pip install 'psycopg[binary]')")
    base = Path(tempfile_dir(tmp_path_factory))
    data, sockets = base / "pgdata", base / "sock"
    sockets.mkdir(parents=True)
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("POSTGRES TESTS SKIPPED: running as root without runuser to drop to the postgres user")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *prefix,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=(base / "postgres.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=1).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.terminate()
                raise RuntimeError((base / "postgres.log").read_text()) from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    shutil.rmtree(base, ignore_errors=True)


def tempfile_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory the postgres user can reach (pytest's base temp is private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="contestkit-pg-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def postgres_url(postgres_cluster: str) -> str:
    """A fresh, empty database in the session's cluster."""
    import psycopg

    name = f"ck_{os.getpid()}_{int(time.monotonic() * 1000) % 10**9}"
    port = postgres_cluster.rsplit(":", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_cluster}/{name}"


# -- the job functions in-process, for races made deterministic ----------------------------------


@dataclass
class OfflineContest:
    """A contest data directory without a server: the library's functions called directly."""

    data_dir: Path
    config: Any
    database: Any
    team_id: int

    def finished_job(self, score: float = 6.0) -> int:
        """A job of the team that has finished (written as the queue would, without running it)."""
        from sqlalchemy import update

        from contestkit.server import jobs
        from contestkit.server.db import Job, Worker, now

        job = jobs.start_job(self.database, self.config, self.team_id, "score-5")
        with self.database.session() as session:
            session.execute(
                update(Job).where(Job.id == job.id).values(status="finished", score=score, finished_at=now())
            )
            session.execute(update(Worker).where(Worker.job_id == job.id).values(status="finished", score=score))
        return job.id

    def job(self, job_id: int) -> dict[str, Any]:
        from contestkit.server import jobs

        with self.database.session() as session:
            return jobs.job_document(jobs.get_job(session, self.team_id, job_id))


@pytest.fixture
def offline_contest(tmp_path: Path) -> Iterator[OfflineContest]:
    """A SQLite contest (two levels, one team) for in-process calls; see ``open_offline_contest``."""
    contest = open_offline_contest(tmp_path)
    yield contest
    contest.database.dispose()


def open_offline_contest(tmp: Path, database_url: str | None = None) -> OfflineContest:
    from sqlalchemy import select

    from contestkit.server.admin import add_team
    from contestkit.server.config import load_config
    from contestkit.server.db import Database, Team

    data_dir = init_contest(tmp, [("Fake", "Level1"), ("Fake", "Level2")], database_url=database_url)
    add_team(data_dir, name="alpha", email="alpha@example.org", password=PASSWORD)
    config = load_config(data_dir)
    database = Database(config.database())
    with database.session() as session:
        team_id = session.scalar(select(Team.id).where(Team.name == "alpha"))
    return OfflineContest(data_dir, config, database, int(team_id))


def interleave_before_write(monkeypatch: pytest.MonkeyPatch, other_request: Any) -> None:
    """Make a race deterministic: ``restart_job`` has read the job and checked that its team has no
    active job, and ``other_request()`` (another request, in its own transaction) commits right then,
    before the restart writes anything."""
    from contestkit.server import jobs

    real = jobs._active_job

    def racing(session: Any, team_id: int) -> Any:
        found = real(session, team_id)
        monkeypatch.setattr(jobs, "_active_job", real)  # once: the other request checks for real
        other_request()
        return found

    monkeypatch.setattr(jobs, "_active_job", racing)


def check_concurrent_restarts_start_the_job_once(contest: OfflineContest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two restarts of one job at the same moment: the second is a 409 and the job runs once."""
    from contestkit.server import jobs

    job_id = contest.finished_job()
    interleave_before_write(
        monkeypatch, lambda: jobs.restart_job(contest.database, contest.config, contest.team_id, job_id)
    )
    with pytest.raises(jobs.JobError) as refused:
        jobs.restart_job(contest.database, contest.config, contest.team_id, job_id)
    assert refused.value.status == 409, refused.value
    assert "restarted by another request" in str(refused.value)
    job = contest.job(job_id)
    assert job["status"] == "queued" and job["attempt"] == 2, job
    assert [(w["task"], w["state"]) for w in job["workers"]] == [("Fake/Level1", "pending"), ("Fake/Level2", "pending")]


def check_restart_racing_a_submission_is_a_409(contest: OfflineContest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart and a new submission of the same team at once: the loser gets a 409, never a 500."""
    from contestkit.server import jobs

    job_id = contest.finished_job(score=6.0)
    submitted: list[int] = []
    interleave_before_write(
        monkeypatch,
        lambda: submitted.append(jobs.start_job(contest.database, contest.config, contest.team_id, "v2").id),
    )
    with pytest.raises(jobs.JobError) as refused:
        jobs.restart_job(contest.database, contest.config, contest.team_id, job_id)
    assert refused.value.status == 409, refused.value
    assert f"already has job {submitted[0]} queued" in str(refused.value)
    # Nothing already done is lost: the finished job keeps its score, the submission stays queued.
    job = contest.job(job_id)
    assert job["status"] == "finished" and job["score"] == 6.0 and job["attempt"] == 1, job
    assert [w["state"] for w in job["workers"]] == ["finished", "finished"]
    assert contest.job(submitted[0])["status"] == "queued"
