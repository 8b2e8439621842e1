"""The server's tables and database connections (SQLite by default, PostgreSQL by URL).

Times are stored as UNIX seconds (floats): both databases compare and sort them the same way, and
no time zone can be lost between SQLite's text dates and PostgreSQL's ``timestamptz``.

The tables themselves are created and upgraded by ``migrations``; the classes here only map them.
A test checks that every mapped column exists after the migrations ran, so the two cannot drift.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from contestkit.errors import ContestkitError
from contestkit.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, JobState, LevelState

# Job and worker states: their home is contestkit.states (the CLI reads the same words back); these
# short names are what the server's queries have always written.
QUEUED, RUNNING, FINISHED, FAILED, CANCELLED = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.FINISHED,
    JobState.FAILED,
    JobState.CANCELLED,
)
ACTIVE = ACTIVE_JOB_STATES
TERMINAL = TERMINAL_JOB_STATES
PENDING = LevelState.PENDING
STALLED = JobState.STALLED


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    namespace: Mapped[str] = mapped_column(String(64), unique=True)
    registry_username: Mapped[str] = mapped_column(String(64), unique=True)
    # The registry password is derived from the server's credentials key and this counter (see
    # registry_auth), so no registry secret is stored; bumping it rotates the password.
    registry_generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # Host controls (issue 15): a disabled team cannot log in or submit; a removed one is also hidden.
    disabled: Mapped[int] = mapped_column(Integer, default=0)
    removed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The leaderboard job the team chose for the final (None: its latest finished one).
    selected_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    jobs: Mapped[list[Job]] = relationship(back_populates="team")


class AuthToken(Base):
    """A login session (cookie) or an API token (bearer); only a SHA-256 of the secret is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "session" or "api"
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    team: Mapped[Team] = relationship()


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(256))
    image: Mapped[str] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    queued_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    timestep_limit: Mapped[int] = mapped_column(Integer)
    wallclock_limit: Mapped[float] = mapped_column(Float)
    # The attempt's seed (level i runs with seed + i): drawn when the attempt first starts, kept
    # when it resumes; None until then (and for jobs of an older server).
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The contest phase the job belongs to (``phases.PhaseKind``); the queue takes higher priority first.
    phase: Mapped[str] = mapped_column(String(32), default="leaderboard")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    source_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    team: Mapped[Team] = relationship(back_populates="jobs")
    workers: Mapped[list[Worker]] = relationship(
        back_populates="job", order_by="Worker.idx", cascade="all, delete-orphan"
    )


class AdminAction(Base):
    """One host action, for the record: who (an admin's email, or ``cli:<user>``) did what to what."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, default=now)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(254), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class ContestState(Base):
    """A moment the host set: ``closed`` (submissions closed), ``final_published``..."""

    __tablename__ = "contest_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(254))


class LoginFailures(Base):
    """One key of one login-throttle counter (``security/throttle_store.py``): its failed password
    checks inside the window, shared by every process and host of the server."""

    __tablename__ = "login_throttle"

    counter: Mapped[str] = mapped_column(String(16), primary_key=True)  # throttle_store.Counter
    key: Mapped[str] = mapped_column(String(32), primary_key=True)  # a 16-byte digest, in hex
    stamps: Mapped[str] = mapped_column(Text)  # UNIX seconds of each counted check, space-separated
    failures: Mapped[int] = mapped_column(Integer)  # how many stamps (the eviction ranks by it)
    expires_at: Mapped[float] = mapped_column(Float)  # when the newest stamp leaves the window


class Worker(Base):
    """One level of one job: the 2018 API's ``workers`` entries."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    game: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta: Mapped[float | None] = mapped_column(Float, nullable=True)
    timesteps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    episodes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mean_episode_reward: Mapped[float | None] = mapped_column(Float, nullable=True)  # so far, while it runs
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    results_dir: Mapped[str | None] = mapped_column(Text, nullable=True)

    job: Mapped[Job] = relationship(back_populates="workers")

    @property
    def task(self) -> str:
        return f"{self.game}/{self.state}"


POOL_SIZE, MAX_OVERFLOW = 10, 20  # PostgreSQL connections of one server (its API processes together)


class Database:
    """One engine and session factory per server process; threads share it, sessions are per use.

    ``share``: this process is one of that many API processes of the server (``server run --workers
    N``); each then keeps ``ceil(1/N)`` of the server's PostgreSQL connections, so a server holds as
    many whatever N is (PostgreSQL's default ``max_connections`` is 100)."""

    def __init__(self, url: str, *, share: int = 1) -> None:
        self.url = url
        share = max(1, share)
        try:
            if url.startswith("sqlite"):
                # Several threads (HTTP handlers, job workers) write; WAL lets readers proceed while a
                # writer commits, and the busy timeout turns lock contention into a short wait.
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(
                    url, pool_pre_ping=True, pool_size=-(-POOL_SIZE // share), max_overflow=-(-MAX_OVERFLOW // share)
                )
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ContestkitError(
                f"database_url '{redact_url(url)}' is not usable ({exc}); use sqlite:///PATH or "
                "postgresql+psycopg://USER:PASSWORD@HOST/DB (install psycopg for PostgreSQL)."
            ) from None
        except ModuleNotFoundError as exc:
            raise ContestkitError(
                f"The database driver '{exc.name}' for {redact_url(url)} is not installed; "
                "for PostgreSQL run `pip install 'psycopg[binary]'`."
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends normally, rolled back when it raises."""
        db = self._sessions()
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            db.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns, also across an OS crash or power loss (NORMAL in WAL mode
    # may lose the last commits then). What it costs is measured by bench/sqlite_sync.py (README).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it goes into a message."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
