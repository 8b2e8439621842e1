"""``contestkit server add-team``: refused input is one sentence, and a team is added whole or not at all.

A team is a row in the database, and its registry account is that row (the realm derives its
password; nothing is written elsewhere); no message may show the team's passwords or their hashes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contestkit.errors import ContestkitError
from contestkit.server.config import EVALUATOR_USERNAME as EVALUATOR
from contestkit.server.contest import teams

LEVELS = [("Fake", "Level1")]


@pytest.fixture
def data_dir(tmp_path: Path, init_contest) -> Path:
    return init_contest(tmp_path, LEVELS)


def _htpasswd_users(data_dir: Path) -> list[str]:
    """The registry accounts the realm accepts with their current passwords (htpasswd listed them once)."""
    from sqlalchemy import select

    from contestkit.server.api.registry import Realm
    from contestkit.server.config import load_config
    from contestkit.server.storage.db import Database, Team

    config = load_config(data_dir)
    database = Database(config.database())
    try:
        realm = Realm(config, database)
        users = [EVALUATOR] if realm.authenticate(EVALUATOR, config.evaluator_registry_password) else []
        with database.session() as session:
            teams = session.scalars(select(Team).order_by(Team.id)).all()
        users += [t.registry_username for t in teams if realm.authenticate(t.registry_username, realm.team_password(t))]
    finally:
        database.dispose()
    assert not (data_dir / "registry" / "htpasswd").exists()
    return users


def _teams(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "contest.db") as db:
        return [row[0] for row in db.execute("SELECT name FROM teams")]


@pytest.fixture
def add_team_cli(cli, password):  # type: ignore[no-untyped-def]
    def add(data_dir: Path, name: str, email: str, password: str = password):  # type: ignore[no-untyped-def]
        return cli(
            "server", "add-team", name, "--email", email, "--password-stdin", "--data-dir", str(data_dir),
            input=password + "\n",
        )  # fmt: skip

    return add


@pytest.mark.parametrize(
    ("name", "email", "expected"),
    [
        ("alpha", "a" * 250 + "@example.org", "The team email has 262 characters; use at most 254."),
        ("a" * 65, "alpha@example.org", "The team name has 65 characters; use at most 64."),
        ("alpha", "al\x01pha@example.org", "The team email contains characters that cannot be stored"),
    ],
)
def test_overlong_or_unstorable_fields_are_refused_up_front(data_dir, add_team_cli, password, name, email, expected):
    result = add_team_cli(data_dir, name, email)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: " + expected), result.stderr
    assert "Traceback" not in result.stderr and password not in result.stdout + result.stderr
    assert _teams(data_dir) == [] and _htpasswd_users(data_dir) == [EVALUATOR]
    ok = add_team_cli(data_dir, "alpha", "alpha@example.org")
    assert ok.returncode == 0, ok.stderr
    assert _teams(data_dir) == ["alpha"] and _htpasswd_users(data_dir) == [EVALUATOR, "alpha"]


@pytest.mark.parametrize(
    ("trigger", "code", "expected"),
    [
        ("SELECT RAISE(ABORT, 'refused')", 2, "A team with the name 'alpha' or email 'alpha@example.org' already"),
        ("INSERT INTO missing VALUES (1)", 1, "The database refused the new team (OperationalError), so nothing"),
    ],
)
def test_a_commit_the_database_refuses_leaves_no_registry_account(data_dir, add_team_cli, password, trigger, code,
                                                                 expected):  # fmt: skip
    with sqlite3.connect(data_dir / "contest.db") as db:
        db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON teams BEGIN {trigger}; END")
    result = add_team_cli(data_dir, "alpha", "alpha@example.org")
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.startswith("error: " + expected), result.stderr
    assert "Traceback" not in result.stderr and "argon2" not in result.stderr and password not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # one sentence (wrapped at most once)
    assert _htpasswd_users(data_dir) == [EVALUATOR]


def test_a_team_added_while_the_realm_runs_can_get_tokens_at_once_and_nothing_is_written(data_dir, password):
    before = sorted(p.name for p in (data_dir / "registry").iterdir())
    teams.add_team(data_dir, name="alpha", email="alpha@example.org", password=password)
    assert _htpasswd_users(data_dir) == [EVALUATOR, "alpha"]
    assert sorted(p.name for p in (data_dir / "registry").iterdir()) == before


def test_a_password_that_is_not_valid_text_is_refused(data_dir):
    with pytest.raises(ContestkitError, match="not valid text"):
        teams.add_team(data_dir, name="alpha", email="alpha@example.org", password="long enough \ud800")
    assert _teams(data_dir) == [] and _htpasswd_users(data_dir) == [EVALUATOR]


def test_team_names_are_normalised_and_bidi_controls_and_look_alikes_are_refused(data_dir, add_team_cli, password):
    """The probe: "аlpha" (Cyrillic а) was accepted next to "alpha", and a name with U+202E (which
    reverses what follows it) printed raw in host tables. Both are refused by `server add-team`, and
    by the host's rename; full-width and ligature forms are stored in their NFKC form."""
    from contestkit.server.config import load_config
    from contestkit.server.errors import Conflict, Invalid
    from contestkit.server.storage.db import Database

    assert add_team_cli(data_dir, "alpha", "alpha@example.org").returncode == 0
    for name in ("\u0430lpha", "ALPHA", "a1pha", "\u03b1lpha"):  # Cyrillic а, upper case, digit one, Greek α
        refused = add_team_cli(data_dir, name, f"x{len(_teams(data_dir))}@example.org")
        assert refused.returncode == 2, (name, refused.stdout + refused.stderr)
        assert "looks like the existing team 'alpha'" in refused.stderr, refused.stderr
    bidi = add_team_cli(data_dir, "evil\u202eteam", "evil@example.org")
    assert bidi.returncode == 2 and "U+202E" in bidi.stderr, bidi.stderr
    wide = add_team_cli(data_dir, "\uff42\uff45\uff54\uff41 \ufb01ve", "beta@example.org")  # ｂｅｔａ ﬁve
    assert wide.returncode == 0, wide.stderr
    assert add_team_cli(data_dir, "gamma", "gamma@example.org").returncode == 0
    assert _teams(data_dir) == ["alpha", "beta five", "gamma"]

    config = load_config(data_dir)
    database = Database(config.database())
    try:
        with database.session() as db:
            with pytest.raises(Conflict, match="looks like the existing team 'alpha'"):
                teams.rename(db, "host", "gamma@example.org", "\u0430lpha")
            with pytest.raises(Invalid, match="U\\+202E"):
                teams.rename(db, "host", "gamma@example.org", "gam\u202ema")
            assert teams.rename(db, "host", "alpha@example.org", "Alpha")["name"] == "Alpha"  # itself only
    finally:
        database.dispose()
