"""Versioned schema migrations in a ``schema_migrations`` table.

Why not Alembic: the schema is a handful of tables, the server upgrades itself at start-up (there is no
operator running ``alembic upgrade``), and the migrations must run unchanged on SQLite and
PostgreSQL. A numbered list of functions, each applied once inside one transaction and recorded in
``schema_migrations``, does that with no ini file, no ``env.py`` in the package data and no extra
dependency, and it is tested against both databases.

Rules for adding a migration: append a new ``(number, name, function)`` to ``MIGRATIONS``; never edit
one that has shipped; define the tables a migration creates inside it (frozen), not from ``db``'s
classes, so that migration 1 creates the same tables in five years as today; keep DDL portable
(``ALTER TABLE ... ADD COLUMN`` works on both databases).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from contestkit.errors import ContestkitError
from contestkit.server.storage.db import Database, now

_history = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _history,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False),
    Column("applied_at", Float, nullable=False),
)


def _m001_initial(conn: Connection) -> None:
    """Teams, sessions and tokens, jobs and their per-level workers."""
    md = MetaData()
    Table(
        "teams",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(64), nullable=False, unique=True),
        Column("email", String(254), nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("namespace", String(64), nullable=False, unique=True),
        Column("registry_username", String(64), nullable=False, unique=True),
        Column("registry_password", Text, nullable=False),
        Column("created_at", Float, nullable=False),
    )
    Table(
        "auth_tokens",
        md,
        Column("id", Integer, primary_key=True),
        Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("name", String(128)),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float),
        Column("last_used_at", Float),
    )
    jobs = Table(
        "jobs",
        md,
        Column("id", Integer, primary_key=True),
        Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        Column("tag", String(256), nullable=False),
        Column("image", Text, nullable=False),
        Column("digest", String(80)),
        Column("status", String(16), nullable=False),
        Column("score", Float),
        Column("error", Text),
        Column("created_at", Float, nullable=False),
        Column("queued_at", Float, nullable=False),
        Column("started_at", Float),
        Column("finished_at", Float),
        Column("attempt", Integer, nullable=False, server_default="1"),
        Column("resumes", Integer, nullable=False, server_default="0"),
        Column("cancel_requested", Integer, nullable=False, server_default="0"),
        Column("runner", String(128)),
        Column("heartbeat_at", Float),
        Column("timestep_limit", Integer, nullable=False),
        Column("wallclock_limit", Float, nullable=False),
    )
    Index("ix_jobs_team_id_id", jobs.c.team_id, jobs.c.id)
    Index("ix_jobs_status_queued_at", jobs.c.status, jobs.c.queued_at)
    # One queued-or-running job per team, enforced by the database so that two simultaneous
    # `submit`s cannot both get in (a check in Python alone would race).
    active = text("status IN ('queued', 'running')")
    Index("ux_jobs_one_active_per_team", jobs.c.team_id, unique=True, sqlite_where=active, postgresql_where=active)
    Table(
        "workers",
        md,
        Column("id", Integer, primary_key=True),
        Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("idx", Integer, nullable=False),
        Column("game", String(128), nullable=False),
        Column("state", String(128), nullable=False),
        Column("status", String(16), nullable=False),
        Column("score", Float),
        Column("progress", Float),
        Column("eta", Float),
        Column("timesteps", Integer),
        Column("episodes", Integer),
        Column("error", Text),
        Column("started_at", Float),
        Column("finished_at", Float),
        Column("results_dir", Text),
    )
    md.create_all(conn)


def _m002_derived_registry_passwords(conn: Connection) -> None:
    """Registry passwords are derived (HMAC of a key in the data directory and a per-team counter),
    so the clear-text column goes: the teams get their new password from /rest/user as before."""
    conn.execute(text("ALTER TABLE teams ADD COLUMN registry_generation INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("UPDATE teams SET registry_password = ''"))
    conn.execute(text("ALTER TABLE teams DROP COLUMN registry_password"))


def _m003_job_seeds_and_running_means(conn: Connection) -> None:
    """Each job attempt's seed (drawn when it first starts, unless server.yaml fixes one), and each
    level's running mean episode reward while it runs; NULL (unknown) for rows made before."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN seed BIGINT"))
    conn.execute(text("ALTER TABLE workers ADD COLUMN mean_episode_reward FLOAT"))


def _m004_contest_phases(conn: Connection) -> None:
    """Running a contest from start to finish (issue 15): the host's controls, phases and the final.

    - ``teams.disabled`` (a disabled team cannot log in or submit; its data stays) and
      ``teams.removed_at`` (a removed team is kept for the record of its jobs, hidden and locked out);
    - ``jobs.phase`` (``leaderboard`` or ``final``), ``jobs.priority`` (the queue takes higher first),
      ``jobs.source_job_id`` (a final job evaluates the image of this leaderboard job);
    - ``teams.selected_job_id``: the submission a team chose for the final (``contestkit select``);
    - ``admin_actions``: who did what, for every host action;
    - ``contest_state``: the moments the host set (submissions closed, final published).

    The one-active-job index now covers leaderboard jobs only, so that a team's final job can be
    queued while its last leaderboard job still runs; a second unique index lets each team have at
    most one final job, which is what makes ``server final start`` idempotent even when two hosts
    (or a restarted one) run it at once.
    """
    conn.execute(text("ALTER TABLE teams ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE teams ADD COLUMN removed_at FLOAT"))
    conn.execute(text("ALTER TABLE teams ADD COLUMN selected_job_id INTEGER"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN phase VARCHAR(32) NOT NULL DEFAULT 'leaderboard'"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN source_job_id INTEGER"))
    conn.execute(text("DROP INDEX ux_jobs_one_active_per_team"))
    md = MetaData()
    jobs = Table("jobs", md, Column("team_id", Integer), Column("status", String(16)), Column("phase", String(32)))
    active = text("status IN ('queued', 'running') AND phase = 'leaderboard'")
    Index("ux_jobs_one_active_per_team", jobs.c.team_id, unique=True, sqlite_where=active, postgresql_where=active)
    final = text("phase = 'final'")
    Index("ux_jobs_one_final_per_team", jobs.c.team_id, unique=True, sqlite_where=final, postgresql_where=final)
    for index in jobs.indexes:
        index.create(conn)
    Table(
        "admin_actions",
        md,
        Column("id", Integer, primary_key=True),
        Column("at", Float, nullable=False),
        Column("actor", String(254), nullable=False),
        Column("action", String(64), nullable=False),
        Column("target", String(254)),
        Column("detail", Text),
    )
    Table(
        "contest_state",
        md,
        Column("key", String(64), primary_key=True),
        Column("at", Float, nullable=False),
        Column("actor", String(254), nullable=False),
    )
    md.tables["admin_actions"].create(conn)
    md.tables["contest_state"].create(conn)


# Migrations that removed secrets: the rows they rewrote must not linger in free pages (SQLite) or as
# dead tuples (PostgreSQL), so the database is compacted once they ran (outside their transaction).
_SCRUB_AFTER = {2}


def _scrub(database: Database) -> None:
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if database.is_sqlite:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("VACUUM FULL teams")


def _m005_read_indexes(conn: Connection) -> None:
    """Indexes for the API's reads at the 2018 scale (tests/server/test_query_plans.py checks them):
    the leaderboard and its fingerprint (finished jobs by team and finish time), a team's latest job
    (by queue time), a team's API tokens, and the sweep of expired sessions."""
    for statement in (
        "CREATE INDEX ix_jobs_status_team_finished ON jobs (status, team_id, finished_at)",
        "CREATE INDEX ix_jobs_team_queued ON jobs (team_id, queued_at)",
        "CREATE INDEX ix_auth_tokens_team_kind ON auth_tokens (team_id, kind)",
        "CREATE INDEX ix_auth_tokens_expires ON auth_tokens (expires_at)",
    ):
        conn.execute(text(statement))


def _m006_login_throttle(conn: Connection) -> None:
    """The login throttle's counts (issue 28: several worker processes and hosts share them): one row
    per counter and key, its stamps in the window, and two indexes for its housekeeping: expired
    rows (``expires_at``) and, over the bound, the least failed first (``counter, failures``)."""
    md = MetaData()
    table = Table(
        "login_throttle",
        md,
        Column("counter", String(16), primary_key=True),
        Column("key", String(32), primary_key=True),
        Column("stamps", Text, nullable=False),
        Column("failures", Integer, nullable=False),
        Column("expires_at", Float, nullable=False),
    )
    Index("ix_login_throttle_rank", table.c.counter, table.c.failures, table.c.expires_at)
    Index("ix_login_throttle_expires", table.c.expires_at)
    md.create_all(conn)


Migration = tuple[int, str, Callable[[Connection], None]]

MIGRATIONS: list[Migration] = [
    (1, "initial schema", _m001_initial),
    (2, "derived registry passwords", _m002_derived_registry_passwords),
    (3, "job seeds and running means", _m003_job_seeds_and_running_means),
    (4, "contest phases, final and host controls", _m004_contest_phases),
    (5, "indexes for the API's reads", _m005_read_indexes),
    (6, "login throttle counts", _m006_login_throttle),
]

LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """The highest applied migration, 0 for an empty database."""
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


def migrate(database: Database) -> list[int]:
    """Bring the schema up to date; returns the versions applied (empty when it already was).

    All pending migrations run in one transaction: a failure leaves the database as it was. On
    PostgreSQL an advisory lock keeps two servers starting at once from both migrating; on SQLite
    the write lock taken by ``BEGIN IMMEDIATE`` does the same.
    """
    applied: list[int] = []
    try:
        with database.engine.connect() as conn:
            if database.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
                conn.execute(text("SELECT pg_advisory_xact_lock(74207420)"))
            try:
                _history.create_all(conn)
                version = current_version(conn)
                if version > LATEST:
                    raise ContestkitError(
                        f"The database is at schema version {version}, newer than this contestkit knows "
                        f"({LATEST}); upgrade contestkit on this host instead of running an older one."
                    )
                for number, name, function in MIGRATIONS:
                    if number <= version:
                        continue
                    function(conn)
                    conn.execute(schema_migrations.insert().values(version=number, name=name, applied_at=now()))
                    applied.append(number)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
    except SQLAlchemyError as exc:
        raise ContestkitError(
            f"Could not prepare the contest database ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "check database_url in server.yaml and that the database server is running."
        ) from None
    if _SCRUB_AFTER & set(applied):
        try:
            _scrub(database)
        except SQLAlchemyError as exc:  # the schema is right; only the compaction failed
            raise ContestkitError(
                f"The database was migrated but could not be compacted ({type(exc).__name__}), so removed secrets "
                "may remain in its free space; run VACUUM on it (SQLite) or VACUUM FULL teams (PostgreSQL)."
            ) from None
    return applied
