"""The contest server under load, at the 2018 contest's scale: req/s and latency per route.

Two databases are measured in the same run, each behind its own ``contestkit server run`` process,
on SQLite (as ``server init`` makes it) and, with ``--postgres BASE_URL`` (a PostgreSQL server this
script may create databases on), on PostgreSQL too:

- **seeded**: the 2018 scale, 923 teams, 4,448 finished jobs of 5 levels (each with its per-level
  scores), 200 signed-in sessions; written straight through the server's models (seconds);
- **empty**: only what the routes need to answer: the 200 signed-in teams, one finished job each.

The jobs of the signed-in teams have results directories like a real evaluation's (a monitor.csv of
222 episodes, log files), so a job page reads what it would read in a contest.

Load: N clients on 127.0.0.1 (N = 1, 20, 100, 200), each sending one request, reading the whole
answer, waiting ``--think`` seconds (a person, or a polling page), and again, for ``--seconds``;
keep-alive connections over a small asyncio HTTP/1.1 client, so that the load generator costs
little of the machine's CPU. With a 1 s think time, 200 clients are only about 200 requests a
second; so each route then also runs closed-loop, with no think time, at 20 and at 200
connections: every connection sends its next request as soon as it has its answer, which is what
``wrk -c 200`` does and where the tail shows. Before a route's phases, each path its
clients will ask for is requested once (the steady state is measured, not the first minute after
a start). Reported per route and phase: req/s and p50/p95/p99 latency (ms), and 5xx answers.

Routes: the leaderboard page ``/``, a job page ``/jobs/<id>``, the metrics scrape ``/metrics``, the
API's ``/rest/leaderboard``, ``/rest/job/status/all``, ``/rest/job/status/<id>`` and
``/rest/health``; and ``/rest/job/status/all`` once more with every client signed in as the
busiest team (seeded: 57 jobs, a 74 KB answer), since that answer grows with the team.
The hardening issue extends this (PostgreSQL, a burst of logins) rather than
rewriting it: add a route to ``ROUTES``, a database to ``--database-url``.

Each phase also reports where the CPU went: ``server_cores``, the CPU seconds of the server's process
tree (the parent and its API workers) per second of the phase, and ``cpu_busy_pct``, each CPU's busy
share (from /proc/stat), so "both cores busy" is a figure. ``--workers 2,1`` runs this checkout's
server with ``--workers 2`` (judged) and, beside it phase by phase on a copy of the data, with
``--workers 1``.

With ``--login-burst``, each route's 200-client phase is run again while 100 more clients log in
over and over (the right password: a full Argon2 check each), to show what logins cost the others.
A route the server does not have (a page, before the pages are merged) is skipped with a note.

Goals (``P99_GOALS_MS``; 200 closed-loop connections on the seeded data, each database): p99 under
100 ms for the page ``/``, ``/rest/leaderboard`` and ``/rest/health``; under 250 ms for
``/rest/job/status/<id>`` and the busiest team's ``/rest/job/status/all``; no 5xx anywhere. With
``--login-burst``: every route's p99 during the burst at most 2x its p99 without it (200 clients
with think time, the same phase with and without the burst).

    python bench/server_load.py [--seconds 8] [--think 1.0] [--clients 1,20,100,200] [--json FILE]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432] [--login-burst] [--routes NAME ...]
        [--workers 2,1] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TEAMS, JOBS, SESSIONS = 923, 4448, 200
LEVELS_CSV = "game,state\n" + "".join(
    f"{game},{state}\n"
    for game, state in (
        ("SonicTheHedgehog-Genesis", "SpringYardZone.Act1"),
        ("SonicTheHedgehog-Genesis", "GreenHillZone.Act2"),
        ("SonicTheHedgehog-Genesis", "StarLightZone.Act3"),
        ("SonicTheHedgehog2-Genesis", "MetropolisZone.Act3"),
        ("SonicAndKnuckles3-Genesis", "LavaReefZone.Act1"),
    )
)
PASSWORD = "a long bench password"
EPISODES_PER_LEVEL = 222  # 1,000,000 timesteps of 4,500-step episodes


@dataclass(frozen=True)
class Route:
    name: str
    signed_in: bool
    path: str  # {job} is one of the client's team's jobs
    busiest: bool = False  # every client is the signed-in team with the most jobs


ROUTES = [
    Route("page /", False, "/"),
    Route("page /jobs/<id>", True, "/jobs/{job}"),
    Route("/metrics", False, "/metrics"),
    Route("/rest/leaderboard", False, "/rest/leaderboard"),
    Route("/rest/job/status/all", True, "/rest/job/status/all"),
    # status/all grows with the team: the busiest team's answer is the one that can miss its goal.
    Route("/rest/job/status/all (busiest team)", True, "/rest/job/status/all", busiest=True),
    Route("/rest/job/status/<id>", True, "/rest/job/status/{job}"),
    Route("/rest/health", False, "/rest/health"),
]


@dataclass
class Client:
    """What a load client sends: its team's session cookie and one of its jobs."""

    cookie: str
    job: int


# -- seeding --------------------------------------------------------------------------------------


def make_contest(
    root: Path, *, seeded: bool, database_url: str | None = None
) -> tuple[Path, list[Client], list[Client]]:
    """A contest data directory with its database filled through the server's models; the load
    clients, and the same list with every client signed in as the team with the most jobs."""
    from sqlalchemy import insert

    from contestkit.server.config import load_config
    from contestkit.server.deployment.admin import init_contest
    from contestkit.server.security import auth
    from contestkit.server.storage.db import AuthToken, Database, Job, Team, Worker

    root.mkdir(parents=True, exist_ok=True)
    levels = root / "levels.csv"
    levels.write_text(LEVELS_CSV)
    data_dir = root / "contest"
    init_contest(
        data_dir,
        registry="127.0.0.1:5000",
        levels_file=levels,
        timestep_limit=1_000_000,
        wallclock_limit=43_200,
        pull_images=False,
        database_url=database_url,
    )
    config = load_config(data_dir)
    # Every load client is 127.0.0.1; in a contest 100 logins come from many addresses.
    config.login_client_limit = 100_000
    config.save()
    tasks = [level for level in config.levels()]
    rng = random.Random(2018)
    password_hash = auth.hash_password(PASSWORD)  # one hash for all: hashing 923 would take a minute
    team_count = TEAMS if seeded else SESSIONS
    job_count = JOBS if seeded else SESSIONS
    start = time.time() - 21 * 86400
    teams = [
        {
            "id": i,
            "name": f"team {i:04d}",
            "email": f"team{i}@example.org",
            "password_hash": password_hash,
            "namespace": f"team-{i}",
            "registry_username": f"team-{i}",
            "created_at": start,
        }
        for i in range(1, team_count + 1)
    ]
    # The first SESSIONS teams sign in; every team gets a job, and the rest go to teams with weights
    # 1/sqrt(n), so a few teams submit far more often than most (seeded: the busiest has about 60).
    weights = [1 / (n**0.5) for n in range(1, team_count + 1)]
    owners = list(range(1, team_count + 1)) + rng.choices(
        range(1, team_count + 1), weights=weights, k=job_count - team_count
    )
    jobs, workers = [], []
    for job_id, team_id in enumerate(owners, start=1):
        finished = start + rng.uniform(0, 20 * 86400)
        scores = [rng.gauss(3000, 1200) for _ in tasks]
        jobs.append(
            {
                "id": job_id,
                "team_id": team_id,
                "tag": f"v{job_id}",
                "image": f"127.0.0.1:5000/team-{team_id}/agent:v1",
                "status": "finished",
                "score": sum(scores) / len(scores),
                "created_at": finished - 40000,
                "queued_at": finished - 40000,
                "started_at": finished - 39000,
                "finished_at": finished,
                "attempt": 1,
                "resumes": 0,
                "cancel_requested": 0,
                "timestep_limit": 1_000_000,
                "wallclock_limit": 43_200.0,
            }
        )
        for idx, (level, score) in enumerate(zip(tasks, scores, strict=True)):
            results_dir = None
            if team_id <= SESSIONS and job_id == team_id:  # the signed-in teams' first jobs: real files
                level_dir = config.jobs_dir / str(job_id) / "attempt-1" / f"{idx:02d}-{level.state}"
                results_dir = _level_results(level_dir, rng)
            workers.append(
                {
                    "job_id": job_id,
                    "idx": idx,
                    "game": level.game,
                    "state": level.state,
                    "status": "finished",
                    "score": score,
                    "progress": 1.0,
                    "timesteps": 1_000_000,
                    "episodes": EPISODES_PER_LEVEL,
                    "started_at": finished - 39000,
                    "finished_at": finished,
                    "results_dir": results_dir,
                }
            )
    clients, tokens = [], []
    for team_id in range(1, SESSIONS + 1):
        secret = auth.new_secret()
        tokens.append(
            {
                "team_id": team_id,
                "kind": "session",
                "token_hash": auth.token_digest(secret),
                "created_at": time.time(),
                "expires_at": time.time() + 86400,
            }
        )
        clients.append(Client(cookie=f"{auth.SESSION_COOKIE}={secret}", job=team_id))
    busiest_team = max(range(1, SESSIONS + 1), key=owners.count)
    busiest = [clients[busiest_team - 1]]
    database = Database(config.database())
    try:
        with database.session() as session:
            session.execute(insert(Team), teams)
            session.execute(insert(Job), jobs)
            for chunk in range(0, len(workers), 5000):
                session.execute(insert(Worker), workers[chunk : chunk + 5000])
            session.execute(insert(AuthToken), tokens)
    finally:
        database.dispose()
    return data_dir, clients, busiest


def _level_results(path: Path, rng: random.Random) -> str:
    """A finished level's results as ``contestkit eval`` writes them (the files a job page reads)."""
    from contestkit.runs.curves import write_reward_svg

    path.mkdir(parents=True, exist_ok=True)
    rows = ["r,l,t"] + [f"{rng.gauss(1000 + 20 * i, 300):.1f},4500,{i * 150.0:.1f}" for i in range(EPISODES_PER_LEVEL)]
    (path / "monitor.csv").write_text("\n".join(rows) + "\n")
    write_reward_svg([float(row.split(",")[0]) for row in rows[1:]], path / "reward-curve.svg", title=path.name)
    (path / "agent-stdout.txt").write_text("".join(f"update {i}: loss {rng.random():.4f}\n" for i in range(2000)))
    (path / "agent-stderr.txt").write_text("")
    (path / "remote-stderr.txt").write_text("env: budget of 1000000 timesteps used\n")
    (path / "summary.json").write_text("{}")
    return str(path)


# -- the server -----------------------------------------------------------------------------------


def _fresh_postgres(base: str, name: str) -> str:
    """A new, empty database ``ck_load_<name>_<pid>`` on the PostgreSQL server at ``base``."""
    import psycopg

    plain = base.replace("postgresql+psycopg://", "postgresql://")
    database = f"ck_load_{name}_{os.getpid()}"
    with psycopg.connect(plain.rstrip("/") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.execute(f'CREATE DATABASE "{database}"')
    return f"{base.rstrip('/')}/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, tree: Path = REPO, workers: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``contestkit server run`` on ``data_dir`` with the code of ``tree`` (this checkout by default);
    ``workers``: its ``--workers`` (None: the server's default, or a tree that predates the option)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    log = (data_dir.parent / "server.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "contestkit",
            "server",
            "run",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *(["--workers", str(workers)] if workers is not None else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tree,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {(data_dir.parent / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# -- where the CPU went ---------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children now alive (the server's API workers)."""
    pids = [pid] + [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _stat_fields(int(entry.name))[1:2] == [str(pid)]
    ]
    total = 0.0
    for each in pids:
        fields = _stat_fields(each)
        if len(fields) > 12:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (stat fields 14, 15)
    return total


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on; [] when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def cpu_busy() -> dict[str, tuple[int, int]]:
    """Per CPU: (busy ticks, all ticks) since boot, from /proc/stat."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *ticks = line.split()
            values = [int(t) for t in ticks]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            found[name] = (sum(values) - idle, sum(values))
    return found


class CpuWatch:
    """The server's CPU (cores' worth, its process tree) and each CPU's busy share during one phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.server_cpu = process_tree_cpu(pid)
        self.cpus = cpu_busy()

    def summary(self) -> dict[str, Any]:
        wall = max(1e-9, time.monotonic() - self.started)
        now = cpu_busy()
        busy = {
            name: round(100 * (now[name][0] - self.cpus[name][0]) / max(1, now[name][1] - self.cpus[name][1]))
            for name in now
            if name in self.cpus
        }
        return {"server_cores": round((process_tree_cpu(self.pid) - self.server_cpu) / wall, 2), "cpu_busy_pct": busy}


# -- the load -------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: the least client work per request Python allows."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, cookie: str | None, body: bytes | None = None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        method = "GET" if body is None else "POST"
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: */*\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Phase:
    route: str
    database: str
    clients: int
    think: float
    seconds: float
    burst: bool = False
    logins: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None

        return {
            "route": self.route,
            "database": self.database,
            "clients": self.clients,
            "think_s": self.think,
            "login_burst": self.burst,
            "login_statuses": {str(k): v for k, v in sorted(self.logins.items())},
            "requests": len(lat),
            "req_per_s": round(len(lat) / self.seconds, 1),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "status_5xx": sum(n for s, n in self.statuses.items() if s >= 500),
            "non_2xx": sum(n for s, n in self.statuses.items() if not 200 <= s < 300),
            "errors": self.errors,
        }


async def login_burst(port: int, deadline: float, logins: int, counts: dict[int, int]) -> None:
    """``logins`` clients logging in over and over until ``deadline`` (statuses counted in ``counts``)."""

    async def one(index: int) -> None:
        connection = Connection(port)
        body = json.dumps({"email": f"team{index % SESSIONS + 1}@example.org", "password": PASSWORD}).encode()
        try:
            while time.monotonic() < deadline:
                try:
                    status = await connection.get("/rest/login", None, body)
                except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                    connection.close()
                    status = -1
                    await asyncio.sleep(0.05)
                counts[status] = counts.get(status, 0) + 1
                if status in (429, 503):  # throttled, or the hash pool is full: Retry-After
                    await asyncio.sleep(1.0)
        finally:
            connection.close()

    await asyncio.gather(*(one(i) for i in range(logins)))


async def run_phase(port: int, route: Route, clients: list[Client], phase: Phase, logins: int = 0) -> None:
    deadline = time.monotonic() + phase.seconds
    rng = random.Random(phase.clients)
    burst = asyncio.ensure_future(login_burst(port, deadline, logins, phase.logins)) if logins else None

    async def one(index: int) -> None:
        client = clients[index % len(clients)]
        connection = Connection(port)
        path = route.path.format(job=client.job)
        cookie = client.cookie if route.signed_in else None
        await asyncio.sleep(rng.uniform(0, min(phase.think, 1.0)))  # spread the clients' first requests
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    status = await connection.get(path, cookie)
                except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
                    phase.errors += 1
                    connection.close()
                    await asyncio.sleep(0.05)
                    continue
                phase.latencies.append(time.perf_counter() - started)
                phase.statuses[status] = phase.statuses.get(status, 0) + 1
                if phase.think:
                    await asyncio.sleep(phase.think)
        finally:
            connection.close()

    await asyncio.gather(*(one(i) for i in range(phase.clients)))
    if burst is not None:
        await burst


async def warm_up(port: int, route: Route, clients: list[Client]) -> bool:
    """One request for each path the clients will ask for, so that phases measure the steady state
    (the leaderboard built once, each job's files read once), not the server's first minute.
    False when the server has no such route (404 for the first path)."""
    connection = Connection(port)
    try:
        for path, cookie in {(route.path.format(job=c.job), c.cookie if route.signed_in else None) for c in clients}:
            if await connection.get(path, cookie) == 404:
                return False
    finally:
        connection.close()
    return True


THIS = "this"  # the server of this checkout, in the rows ("baseline": --baseline-tree's; "workers=N": --workers')
CLOSED_LOOP = (20, 200)  # connections of the no-think phases: each sends again as soon as answered


def measure(
    ports: dict[str, int],
    database: str,
    clients: list[Client],
    busiest: list[Client],
    args: argparse.Namespace,
    pids: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Every phase of every route, against each server in ``ports`` (name -> port) in turn, so that
    a baseline server and this checkout's see the same machine load, phase by phase."""
    rows = []
    for route in ROUTES:
        if args.routes and route.name not in args.routes:
            continue
        clients_now = busiest if route.busiest else clients
        if not all(asyncio.run(warm_up(p, route, clients_now)) for p in ports.values()):
            print(f"{database:7} {route.name:24} skipped: this server has no such route (404)", flush=True)
            continue
        plan = [(n, args.think, False) for n in args.clients]
        plan += [(n, 0.0, False) for n in CLOSED_LOOP] if args.saturation else []
        if args.login_burst:
            plan.append((200, args.think, True))
        for count, think, burst in plan:
            for server, port in ports.items():
                phase = Phase(route.name, database, count, think, args.seconds, burst=burst)
                watch = CpuWatch((pids or {}).get(server, 0))
                asyncio.run(run_phase(port, route, clients_now, phase, logins=100 if burst else 0))
                row = {**phase.summary(), **watch.summary(), "server": server}
                rows.append(row)
                print(
                    f"{server:8} {database:7} {route.name:24} {count:4} clients think {think:3.1f}s"
                    f"{' +logins' if burst else ''}: {row['req_per_s']:8.1f} req/s  p50 {row['p50_ms']} "
                    f"p95 {row['p95_ms']} p99 {row['p99_ms']} ms  5xx {row['status_5xx']}  non-2xx {row['non_2xx']}  "
                    f"errors {row['errors']}  server {row['server_cores']} cores  busy {row['cpu_busy_pct']}"
                    + (f"  logins {row['login_statuses']}" if burst else ""),
                    flush=True,
                )
    return rows


WRK_CONNECTIONS = (20, 200)


def _wrk_ms(text: str) -> float | None:
    """wrk's latency ("6.49ms", "1.78s", "812.00us") in ms."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match.group(2)]
    return round(float(match.group(1)) * scale, 2)


def wrk_rows(
    ports: dict[str, int],
    pids: dict[str, int],
    database: str,
    clients: list[Client],
    busiest: list[Client],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The cross-check: ``wrk -t2 -c{20,200} -d{seconds}s --latency`` (a C load generator, so the
    figures do not depend on this script's own client) on each route and server in turn."""
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): no cross-check", flush=True)
        return []
    rows = []
    for route in ROUTES:
        if args.routes and route.name not in args.routes:
            continue
        client = (busiest if route.busiest else clients)[0]
        for connections in WRK_CONNECTIONS:
            for server, port in ports.items():
                command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, int(args.seconds))}s", "--latency"]
                if route.signed_in:
                    command += ["-H", f"Cookie: {client.cookie}"]
                command.append(f"http://127.0.0.1:{port}{route.path.format(job=client.job)}")
                watch = CpuWatch(pids.get(server, 0))
                out = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
                found = {
                    "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M),
                    "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M),
                    "rps": re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M),
                    "non2xx": re.search(r"Non-2xx or 3xx responses: (\d+)", out),
                    "timeouts": re.search(r"timeout (\d+)", out),
                }
                row = {
                    "tool": "wrk", "server": server, "route": route.name, "database": database,
                    "connections": connections,
                    "req_per_s": float(found["rps"].group(1)) if found["rps"] else None,
                    "p50_ms": _wrk_ms(found["p50"].group(1)) if found["p50"] else None,
                    "p99_ms": _wrk_ms(found["p99"].group(1)) if found["p99"] else None,
                    "non_2xx": int(found["non2xx"].group(1)) if found["non2xx"] else 0,
                    "timeouts": int(found["timeouts"].group(1)) if found["timeouts"] else 0,
                    **watch.summary(),
                }  # fmt: skip
                rows.append(row)
                print(
                    f"wrk {server:9} {database:7} {route.name:24} -c{connections:<4} {row['req_per_s']} req/s  "
                    f"p50 {row['p50_ms']} p99 {row['p99_ms']} ms  non-2xx {row['non_2xx']}  timeouts "
                    f"{row['timeouts']}  server {row['server_cores']} cores  busy {row['cpu_busy_pct']}",
                    flush=True,
                )
    return rows


# The goals, at 200 closed-loop connections (no think time) on the seeded data: p99 in ms per route.
P99_GOALS_MS = {
    "page /": 100.0,
    "/rest/leaderboard": 100.0,
    "/rest/health": 100.0,
    "/rest/job/status/<id>": 250.0,
    "/rest/job/status/all (busiest team)": 250.0,
}
BURST_FACTOR = 2.0  # during a login burst, every other route's p99 at most this times its idle p99


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goals per database: p99 at 200 no-think connections on the seeded data, no 5xx, and
    each route's p99 during the login burst against the same phase without it."""

    def find(route: str, database: str, clients: int = 200, think: bool = False, burst: bool = False):  # type: ignore[no-untyped-def]
        return next(
            (
                r
                for r in rows
                if r["route"] == route
                and r["database"] == database
                and r["clients"] == clients
                and (r["think_s"] > 0) == think
                and r.get("login_burst", False) == burst
            ),
            None,
        )

    rows = [r for r in rows if r.get("server", THIS) == THIS]  # a baseline's figures are not judged
    goals: dict[str, Any] = {"no 5xx (all routes)": all(r["status_5xx"] == 0 for r in rows)}
    kinds = sorted({r["database"].split()[0] for r in rows})
    for kind in kinds:
        for route in sorted({r["route"] for r in rows}):
            key = f"{kind} {route}"
            closed = find(route, f"{kind} seeded")
            if route in P99_GOALS_MS and closed and closed["p99_ms"] is not None:
                limit = P99_GOALS_MS[route]
                goals[f"{key} p99 {closed['p99_ms']} ms < {limit:g} (200 connections, no think)"] = (
                    closed["p99_ms"] < limit
                )
            idle, burst = (
                find(route, f"{kind} seeded", think=True),
                find(route, f"{kind} seeded", think=True, burst=True),
            )
            if idle and burst and idle["p99_ms"]:
                ratio = round(burst["p99_ms"] / idle["p99_ms"], 2)
                goals[f"{key} p99 during logins / without {ratio} <= {BURST_FACTOR:g}"] = ratio <= BURST_FACTOR
    return goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--think", type=float, default=1.0, help="seconds each client waits between requests")
    parser.add_argument("--clients", default="1,20,100,200", help="client counts, comma-separated")
    parser.add_argument("--routes", nargs="*", help="only these routes (names as printed)")
    parser.add_argument(
        "--no-closed-loop", dest="saturation", action="store_false", help="skip the no-think phases (20, 200)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--postgres", help="also measure PostgreSQL: a base URL on which databases may be created")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="PostgreSQL only")
    parser.add_argument("--login-burst", action="store_true", help="also each route's 200 clients during 100 logins")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run the server of this source tree (e.g. `git archive main`), on a copy of the same data, "
        "phase by phase in turn with this checkout's: before/after figures under the same machine load",
    )
    parser.add_argument(
        "--workers",
        help="this checkout's `server run --workers`, comma-separated (e.g. 2,1): the first is judged against the "
        "goals, each other runs beside it, phase by phase, on a copy of the data (default: the server's own default)",
    )
    parser.add_argument(
        "--wrk", action="store_true", help="also cross-check each route with wrk at 20 and 200 connections"
    )
    parser.add_argument(
        "--sizes", default="empty,seeded", help="which data to measure: empty, seeded or both (the goals: seeded)"
    )
    args = parser.parse_args()
    args.clients = [int(n) for n in args.clients.split(",")]
    args.sizes = [size for size in ("empty", "seeded") if size in args.sizes.split(",")]
    args.workers = [int(n) for n in args.workers.split(",")] if args.workers else [None]
    root = Path(tempfile.mkdtemp(prefix="contestkit-load-"))
    rows: list[dict[str, Any]] = []
    wrk_figures: list[dict[str, Any]] = []
    seeding: dict[str, float] = {}
    try:
        kinds = (["sqlite"] if args.sqlite else []) + (["postgres"] if args.postgres else [])
        for kind, size in [(k, size) for k in kinds for size in args.sizes]:
            database = f"{kind} {size}"
            url = _fresh_postgres(args.postgres, size) if kind == "postgres" else None
            started = time.monotonic()
            data_dir, clients, busiest = make_contest(root / kind / size, seeded=size == "seeded", database_url=url)
            seeding[database] = round(time.monotonic() - started, 1)
            print(f"{database}: database written in {seeding[database]} s", flush=True)
            procs: dict[str, subprocess.Popen[bytes]] = {}
            ports: dict[str, int] = {}
            try:
                if args.baseline_tree:
                    copy = data_dir.parent.parent / f"{data_dir.parent.name}-baseline" / data_dir.name
                    shutil.copytree(data_dir, copy)
                    procs["baseline"], ports["baseline"] = start_server(copy, args.baseline_tree.resolve())
                for index, workers in enumerate(args.workers):
                    label = THIS if index == 0 else f"workers={workers}"
                    where = data_dir
                    if index:  # one server per data directory: the others run on copies
                        where = data_dir.parent.parent / f"{data_dir.parent.name}-{label}" / data_dir.name
                        shutil.copytree(data_dir, where, ignore=shutil.ignore_patterns("server.lock", "metrics"))
                    procs[label], ports[label] = start_server(where, workers=workers)
                pids = {k: p.pid for k, p in procs.items()}
                rows += measure(ports, database, clients, busiest, args, pids)
                if args.wrk:
                    wrk_figures += wrk_rows(ports, pids, database, clients, busiest, args)
            finally:
                for proc in procs.values():
                    stop_server(proc)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "scale": {"teams": TEAMS, "jobs": JOBS, "levels": 5, "sessions": SESSIONS},
        "seconds_per_phase": args.seconds,
        "seeding_s": seeding,
        "rows": rows,
        "wrk": wrk_figures,
        "goals": verdict(rows),
    }
    print(json.dumps(report["goals"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
