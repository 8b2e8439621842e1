"""What the organiser does from the shell: create a contest data directory and add teams.

Each team gets a namespace in the one registry (``HOST:PORT/<namespace>/...``) and its own registry
account in the registry's htpasswd file. Plain htpasswd authentication has no per-repository
permissions: any valid account may push and pull any repository of that registry. contestkit
therefore enforces isolation where it matters for the contest: the server only ever starts jobs for
images under the team's own namespace, and the client only lists that namespace. A team that knows
another team's repository name could still pull or overwrite that image at the registry; organisers
who need registry-level isolation should put the registry behind token authentication.
"""

from __future__ import annotations

import fcntl
import logging
import re
import secrets
import shutil
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from contestkit.errors import ContestkitError, UsageError
from contestkit.server import auth
from contestkit.server.config import (
    CONFIG_NAME,
    EVALUATOR_USERNAME,
    LEVELS_NAME,
    ServerConfig,
    load_config,
    read_levels,
    registry_config_yaml,
    validate,
    write_private,
)
from contestkit.server.db import AuthToken, Database, Team
from contestkit.server.migrations import migrate

log = logging.getLogger("contestkit.server.admin")

_NAMESPACE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The lengths of the teams table's columns: checked up front, so that no database refuses them later.
NAME_MAX = 64
EMAIL_MAX = 254
NAMESPACE_MAX = 48  # the column holds 64; registry namespaces are kept shorter


@dataclass
class InitResult:
    config: ServerConfig
    registry_config: Path
    warnings: list[str]


def init_contest(
    data_dir: Path,
    *,
    registry: str,
    levels_file: Path,
    timestep_limit: int,
    wallclock_limit: float,
    database_url: str | None = None,
    registry_scheme: str | None = None,
    evaluator: str | None = None,
    pull_images: bool = True,
    parallel_levels: int = 1,
    force: bool = False,
) -> InitResult:
    """Create a contest data directory: configuration, level set, registry files and the database."""
    data_dir = Path(data_dir).expanduser().absolute()
    if (data_dir / CONFIG_NAME).exists() and not force:
        raise UsageError(
            f"{data_dir} already holds a contest ({CONFIG_NAME}); pass --force to rewrite its configuration "
            "(teams and jobs are kept) or choose another --data-dir."
        )
    levels = read_levels(Path(levels_file))
    warnings = _check_levels(levels) if evaluator is None else []
    if registry_scheme is None:
        host = registry.rsplit(":", 1)[0]
        registry_scheme = "http" if host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.") else "https"
    config = ServerConfig(
        registry=registry,
        registry_scheme=registry_scheme,
        timestep_limit=timestep_limit,
        wallclock_limit=wallclock_limit,
        database_url=database_url,
        evaluator=evaluator,
        pull_images=pull_images,
        parallel_levels=parallel_levels,
        evaluator_registry_password=secrets.token_urlsafe(24),
        data_dir=data_dir,
    )
    if force and (data_dir / CONFIG_NAME).exists():
        # Keep the evaluator's registry password: the htpasswd entry and running pulls rely on it.
        config.evaluator_registry_password = load_config(data_dir).evaluator_registry_password or (
            config.evaluator_registry_password
        )
    validate(config)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if Path(levels_file).absolute() != (data_dir / LEVELS_NAME):
        shutil.copyfile(levels_file, data_dir / LEVELS_NAME)
    config.jobs_dir.mkdir(exist_ok=True)
    (config.registry_dir / "data").mkdir(parents=True, exist_ok=True)
    set_htpasswd(config, EVALUATOR_USERNAME, config.evaluator_registry_password)
    registry_config = config.registry_dir / "config.yml"
    write_private(registry_config, registry_config_yaml(config, secrets.token_urlsafe(24)))
    database = Database(config.database())
    try:
        migrate(database)
    finally:
        database.dispose()
    config.save()
    return InitResult(config=config, registry_config=registry_config, warnings=warnings)


def _check_levels(levels: list) -> list[str]:
    """Unknown games or states are errors now rather than failed jobs later; missing ROMs are warnings."""
    try:
        from contestkit import games
    except ImportError:  # the emulator package is optional on a pure API host
        return ["The emulator package is not installed here, so the level set was not checked."]
    warnings: list[str] = []
    for level in levels:
        resolved = games.resolve_level(level.game, level.state, check_rom=False)
        if games.rom_path(resolved.game) is None:
            warnings.append(
                f"The ROM of {resolved.game} is not imported on this host: run `contestkit roms import PATH`."
            )
    return sorted(set(warnings))


def namespace_for(name: str) -> str:
    """A registry namespace from a team name: lower case, runs of other characters become '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:48]


@dataclass
class NewTeam:
    name: str
    email: str
    namespace: str
    registry_url: str
    registry_username: str


def _check_text(value: str, what: str, limit: int) -> None:
    """Refuse text the teams table cannot hold: too long, not valid Unicode, or control characters."""
    if not auth.encodable(value) or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise UsageError(f"The team {what} contains characters that cannot be stored; use printable text.")
    if len(value) > limit:
        raise UsageError(f"The team {what} has {len(value)} characters; use at most {limit}.")


def _database_failure(exc: SQLAlchemyError) -> ContestkitError:
    """One sentence for a failed write: the error's kind only, since its text quotes the row's values,
    the team's password hash and registry password among them."""
    kind = type(getattr(exc, "orig", None) or exc).__name__
    return ContestkitError(
        f"The database refused the new team ({kind}), so nothing was added; check that the database is "
        "reachable and the team's details are valid, then run add-team again."
    )


def add_team(data_dir: Path, *, name: str, email: str, password: str, namespace: str | None = None) -> NewTeam:
    """Create a team with its login, its registry namespace and its registry account.

    The team is committed first and its registry account written after: a refused commit leaves no
    account behind, and an account that cannot be written removes the team again.
    """
    config = load_config(data_dir)
    name = name.strip()
    email = email.strip().lower()
    if not name:
        raise UsageError(f"The team name must have 1 to {NAME_MAX} characters.")
    _check_text(name, "name", NAME_MAX)
    _check_text(email, "email", EMAIL_MAX)
    if not _EMAIL.match(email):
        raise UsageError(f"'{email}' is not an email address.")
    auth.check_password_rules(password)
    namespace = namespace or namespace_for(name)
    if not _NAMESPACE.match(namespace) or len(namespace) > NAMESPACE_MAX:
        raise UsageError(
            f"The registry namespace '{namespace}' is not valid: use lower-case letters and digits, separated "
            f"by single '.', '_' or '-', at most {NAMESPACE_MAX} characters (pass --namespace to choose one)."
        )
    if namespace == EVALUATOR_USERNAME:
        raise UsageError(f"'{namespace}' is reserved for the server's own registry account; choose another name.")
    registry_password = secrets.token_urlsafe(24)
    database = Database(config.database())
    try:
        try:
            migrate(database)
            with database.session() as db:
                for column, value, what in (
                    (Team.name, name, "name"),
                    (Team.email, email, "email"),
                    (Team.namespace, namespace, "registry namespace"),
                ):
                    if db.scalar(select(Team.id).where(column == value)) is not None:
                        raise UsageError(f"A team with the {what} '{value}' already exists.")
                db.add(
                    Team(
                        name=name,
                        email=email,
                        password_hash=auth.hash_password(password),
                        namespace=namespace,
                        registry_username=namespace,
                        registry_password=registry_password,
                    )
                )
        except IntegrityError:
            raise UsageError(f"A team with the name '{name}' or email '{email}' already exists.") from None
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None
        try:
            set_htpasswd(config, namespace, registry_password)
        except (OSError, ContestkitError) as exc:
            _remove_team(database, namespace)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ContestkitError(
                f"The registry account of team '{name}' could not be written to {config.htpasswd_path} "
                f"({reason}), so the team was not added; fix that and run add-team again."
            ) from None
    finally:
        database.dispose()
    return NewTeam(
        name=name,
        email=email,
        namespace=namespace,
        registry_url=f"{config.registry}/{namespace}",
        registry_username=namespace,
    )


def _remove_team(database: Database, namespace: str) -> None:
    """Undo a team just committed whose registry account could not be written (best effort)."""
    try:
        with database.session() as db:
            db.execute(delete(Team).where(Team.namespace == namespace))
    except SQLAlchemyError as exc:
        log.error("could not remove team %s after its registry account failed: %s", namespace, type(exc).__name__)


def set_password(data_dir: Path, *, email: str, password: str) -> None:
    """Replace a team's password, end its sessions and revoke its API tokens.

    A reset is usually a response to a leak: whoever had the old password may have minted API tokens
    with it, so those go too; the team logs in again and creates new tokens.
    """
    config = load_config(data_dir)
    auth.check_password_rules(password)
    database = Database(config.database())
    try:
        with database.session() as db:
            address = email.strip().lower()
            team = db.scalar(select(Team).where(Team.email == address)) if auth.encodable(address) else None
            if team is None:
                raise UsageError(f"No team has the email '{email}'.")
            team.password_hash = auth.hash_password(password)
            db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    finally:
        database.dispose()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def set_htpasswd(config: ServerConfig, username: str, password: str) -> None:
    """Add or replace one bcrypt entry of the registry's htpasswd file (the registry reloads it)."""
    if ":" in username:
        raise ContestkitError(f"Registry user name '{username}' must not contain ':'.")
    path = config.htpasswd_path
    entry = f"{username}:{bcrypt.hashpw(password.encode('utf-8'), bcrypt.gensalt(rounds=10)).decode('ascii')}"
    with _locked(path):
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        lines = [line for line in lines if line and not line.startswith(f"{username}:")]
        lines.append(entry)
        write_private(path, "\n".join(lines) + "\n")
