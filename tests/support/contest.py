"""A contest server as users run it: ``contestkit server init`` makes the data directory, the real CLI
(``python -m contestkit server run``) serves it from a subprocess on a free port, with a real SQLite
file (or PostgreSQL). Its levels are run by the TEST DOUBLE in ``tests/server/fake_level_runner.py``
(the only thing faked; see there why)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.commands import find_free_port, run_cli, subprocess_env
from tests.support.paths import FAKE_EVALUATOR, PASSWORD, REPO


class ServerProcess:
    """``contestkit server run`` on a free port; ``kill()`` is SIGKILL (a crash), ``stop()`` SIGTERM."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None, workers: int | None = None
    ) -> None:
        """``workers``: ``--workers N`` (None: the CLI's default, one API process per CPU)."""
        self.data_dir = data_dir
        self.workers = workers
        self.port = port or find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or subprocess_env()
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
                "--no-registry",  # the tests run the registry themselves (the `registry` fixture), when they need one
                *(["--workers", str(self.workers)] if self.workers is not None else []),
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
    password: str = PASSWORD  # every team's, unless a test says otherwise

    @property
    def url(self) -> str:
        return self.server.url

    def add_team(self, name: str, email: str, password: str = PASSWORD, *, via_cli: bool = False) -> None:
        """Add a team with ``contestkit server add-team`` or, quicker, the function behind it."""
        if via_cli:
            result = run_cli(
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
        from contestkit.server.contest.teams import add_team

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
    result = run_cli(*args)
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

    def __call__(
        self,
        levels: list[tuple[str, str]],
        *,
        env: dict[str, str] | None = None,
        workers: int | None = None,
        **options: Any,
    ) -> Contest:
        tmp = self.root / f"contest-{len(self.servers)}"
        tmp.mkdir(parents=True)
        data_dir = init_contest(tmp, levels, **options)
        server = ServerProcess(data_dir, env=env, workers=workers).start()
        self.servers.append(server)
        return Contest(data_dir=data_dir, server=server, levels=levels)

    def close(self) -> None:
        for server in self.servers:
            server.kill()


_team_counter = iter(range(1, 1_000_000))


def unique_team(prefix: str = "team") -> tuple[str, str]:
    """A team name and email no other test of this process uses."""
    n = next(_team_counter)
    return f"{prefix}{n}", f"{prefix}{n}@example.org"
