"""Schema migrations (on SQLite and PostgreSQL), the server configuration file and the organiser's commands
(in-process, real SQLite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

import contestkit
from contestkit.env.levellist import read_level_set
from contestkit.errors import ContestkitError, UsageError
from contestkit.server.config import load_config
from contestkit.server.contest import teams
from contestkit.server.deployment import admin
from contestkit.server.storage.db import Database
from contestkit.server.storage.migrations import LATEST, migrate


def check_schema(database: Database) -> None:
    """Every column the ORM maps exists after the migrations ran: the two cannot drift apart."""
    from sqlalchemy import inspect

    from contestkit.server.storage.db import Base

    inspector = inspect(database.engine)
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert {c.name for c in table.columns} <= columns, table.name


def check_one_active_job_per_team(database: Database) -> None:
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


def test_migrations_create_the_schema_once_and_record_it(database_url: str):
    database = Database(database_url)
    assert database.engine.dialect.name in database_url  # really the database asked for
    assert migrate(database) == list(range(1, LATEST + 1))
    assert migrate(database) == []  # idempotent: a restart applies nothing
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT max(version) FROM schema_migrations")).scalar() == LATEST
    check_schema(database)
    check_one_active_job_per_team(database)
    database.dispose()


def test_a_database_newer_than_this_contestkit_is_refused(database_url: str):
    database = Database(database_url)
    migrate(database)
    with database.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)"))
    with pytest.raises(ContestkitError, match="newer than this contestkit"):
        migrate(database)
    database.dispose()


def test_an_unreachable_database_is_one_sentence(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    with pytest.raises(ContestkitError, match="Could not prepare the contest database"):
        migrate(database)
    with pytest.raises(ContestkitError, match="not usable"):
        Database("nosuchdb://x")


def _init(tmp_path: Path, **options) -> Path:  # type: ignore[no-untyped-def]
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nFake,Level1\n")
    settings = {
        "registry": "127.0.0.1:5000",
        "levels_file": levels,
        "timestep_limit": 100,
        "wallclock_limit": 10.0,
        "evaluator": "tests.server.fake_level_runner:fake_level_runner",
    }
    settings.update(options)
    admin.init_contest(tmp_path / "data", **settings)
    return tmp_path / "data"


def test_config_errors_name_the_file_line_and_key(tmp_path: Path):
    data_dir = _init(tmp_path)
    path = data_dir / "server.yaml"
    original = path.read_text()
    path.write_text(original + "max_resume: 3\n")
    with pytest.raises(UsageError) as err:
        load_config(data_dir)
    assert str(err.value) == (
        f"{path}, line {len(original.splitlines()) + 1}: unknown key 'max_resume' (did you mean 'max_resumes'?)."
    )
    path.write_text(original.replace("timestep_limit: 100", "timestep_limit: lots"))
    with pytest.raises(UsageError, match="key 'timestep_limit' must be a whole number, e.g. `timestep_limit: "):
        load_config(data_dir)
    path.write_text(original.replace("registry: 127.0.0.1:5000", "registry: http://reg/x"))
    with pytest.raises(UsageError, match="must be HOST:PORT"):
        load_config(data_dir)
    path.write_text("registry: 127.0.0.1:5000\nseed: [unclosed\nmax_resumes: 1\n")
    with pytest.raises(UsageError, match="line [23]: not valid YAML"):
        load_config(data_dir)
    with pytest.raises(ContestkitError, match="is not a contest data directory"):
        load_config(tmp_path / "elsewhere")


def test_cpusets_are_checked_when_the_config_loads(tmp_path: Path):
    data_dir = _init(tmp_path)
    path = data_dir / "server.yaml"
    original = path.read_text()
    assert "cpusets: []" in original  # written, so hosts see the setting exists
    mine = max(os.sched_getaffinity(0))
    path.write_text(original.replace("cpusets: []", f"cpusets: ['{mine}']"))
    assert load_config(data_dir).cpusets == [str(mine)]
    path.write_text(original.replace("cpusets: []", f"cpusets: ['{mine}', '0-{mine}']"))
    with pytest.raises(UsageError, match=f"share CPU {mine}; give each running level CPUs of its own"):
        load_config(data_dir)
    path.write_text(original.replace("cpusets: []", "cpusets: ['9999']"))
    with pytest.raises(UsageError, match="cpusets entry '9999': CPU 9999 is not available here"):
        load_config(data_dir)
    path.write_text(original.replace("cpusets: []", "cpusets: 0-1"))
    expected = r"""key 'cpusets' must be a list of strings, e.g. `cpusets: \["0-5", "6-11"\]`"""
    with pytest.raises(UsageError, match=expected):
        load_config(data_dir)


def test_level_files_are_checked(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,level\nA,B\n")
    with pytest.raises(UsageError, match="header 'game,state'"):
        read_level_set(bad)
    bad.write_text("game,state\n")
    with pytest.raises(UsageError, match="lists no levels"):
        read_level_set(bad)
    bad.write_text("game,state\nA,B\nA,B\n")
    with pytest.raises(UsageError, match="twice"):
        read_level_set(bad)
    bad.write_text("game,state\nA,\n")
    with pytest.raises(UsageError, match="line 2"):
        read_level_set(bad)
    sonic = Path(contestkit.__file__).parent / "data" / "sonic-validation.csv"  # the contest's own list
    if sonic.is_file():
        assert len(read_level_set(sonic)) >= 5


def test_init_refuses_to_overwrite_and_force_keeps_teams_and_secrets(tmp_path: Path):
    data_dir = _init(tmp_path)
    teams.add_team(data_dir, name="Alpha", email="alpha@example.org", password="long enough")
    secret = load_config(data_dir).evaluator_registry_password
    admin_secret = load_config(data_dir).registry_admin_password
    keys = {name: (data_dir / "registry" / name).read_bytes() for name in ("token.key", "token.crt", "credentials.key")}
    with pytest.raises(UsageError, match="already holds a contest"):
        _init(tmp_path)
    _init(tmp_path, force=True, timestep_limit=500)
    config = load_config(data_dir)
    assert config.timestep_limit == 500 and config.evaluator_registry_password == secret
    assert config.registry_admin_password == admin_secret and len(admin_secret) >= 24
    with pytest.raises(UsageError, match="already exists"):
        teams.add_team(data_dir, name="Alpha", email="other@example.org", password="long enough")
    # The signing key (tokens in flight) and the credentials key (every team's registry password) stay.
    assert {name: (data_dir / "registry" / name).read_bytes() for name in keys} == keys


def test_add_team_refuses_bad_input_with_the_rule(tmp_path: Path):
    data_dir = _init(tmp_path)
    with pytest.raises(UsageError, match="at least 8 characters"):
        teams.add_team(data_dir, name="Alpha", email="alpha@example.org", password="short")
    with pytest.raises(UsageError, match="is not an email address"):
        teams.add_team(data_dir, name="Alpha", email="alpha", password="long enough")
    with pytest.raises(UsageError, match="namespace"):
        teams.add_team(data_dir, name="!!!", email="alpha@example.org", password="long enough")
    with pytest.raises(UsageError, match="reserved"):
        teams.add_team(
            data_dir, name="x", email="x@example.org", password="long enough", namespace="contestkit-evaluator"
        )
    team = teams.add_team(data_dir, name="Team Rocket!", email="r@example.org", password="long enough")
    assert team.namespace == "team-rocket" and team.registry_url == "127.0.0.1:5000/team-rocket"


def test_server_cli_says_what_to_do(tmp_path: Path, cli, write_levels):
    levels = write_levels(tmp_path / "levels.csv", [("Fake", "Level1")])
    data_dir = tmp_path / "data"
    created = cli(
        "server",
        "init",
        "--data-dir",
        str(data_dir),
        "--registry",
        "127.0.0.1:5000",
        "--levels",
        str(levels),
        "--timestep-limit",
        "100",
        "--wallclock-limit",
        "60",
        "--evaluator",
        "a:b",
    )
    assert created.returncode == 0, created.stderr
    assert f"docker-registry serve {data_dir}/registry/config.yml" in created.stdout
    registry_config = (data_dir / "registry" / "config.yml").read_text()
    assert "htpasswd" not in registry_config and "realm: http://127.0.0.1:8000/rest/registry/token" in registry_config
    again = cli(
        "server",
        "init",
        "--data-dir",
        str(data_dir),
        "--registry",
        "127.0.0.1:5000",
        "--levels",
        str(levels),
        "--timestep-limit",
        "100",
        "--wallclock-limit",
        "60",
    )
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    no_password = cli("server", "add-team", "A", "--email", "a@example.org", "--data-dir", str(data_dir), input="")
    assert no_password.returncode == 2 and "--password-stdin" in no_password.stderr
    missing = cli("server", "run", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "contestkit server init" in missing.stderr


def test_a_local_ipv6_registry_without_a_port_is_served_over_http(tmp_path: Path):
    """init chose the scheme from ``registry.rsplit(':', 1)[0]``, which made ``[::1]`` into ``[:``."""
    assert load_config(_init(tmp_path, registry="[::1]")).registry_scheme == "http"
