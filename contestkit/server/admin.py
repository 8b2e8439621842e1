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
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

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
from contestkit.server.db import Database, Team
from contestkit.server.migrations import migrate

_NAMESPACE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


def add_team(data_dir: Path, *, name: str, email: str, password: str, namespace: str | None = None) -> NewTeam:
    """Create a team with its login, its registry namespace and its registry account."""
    config = load_config(data_dir)
    name = name.strip()
    email = email.strip().lower()
    if not name or len(name) > 64:
        raise UsageError("The team name must have 1 to 64 characters.")
    if not _EMAIL.match(email):
        raise UsageError(f"'{email}' is not an email address.")
    auth.check_password_rules(password)
    namespace = namespace or namespace_for(name)
    if not _NAMESPACE.match(namespace) or len(namespace) > 48:
        raise UsageError(
            f"The registry namespace '{namespace}' is not valid: use lower-case letters and digits, separated "
            "by single '.', '_' or '-' (pass --namespace to choose one)."
        )
    if namespace == EVALUATOR_USERNAME:
        raise UsageError(f"'{namespace}' is reserved for the server's own registry account; choose another name.")
    registry_password = secrets.token_urlsafe(24)
    database = Database(config.database())
    try:
        migrate(database)
        with database.session() as session:
            for column, value, what in (
                (Team.name, name, "name"),
                (Team.email, email, "email"),
                (Team.namespace, namespace, "registry namespace"),
            ):
                if session.scalar(select(Team.id).where(column == value)) is not None:
                    raise UsageError(f"A team with the {what} '{value}' already exists.")
            session.add(
                Team(
                    name=name,
                    email=email,
                    password_hash=auth.hash_password(password),
                    namespace=namespace,
                    registry_username=namespace,
                    registry_password=registry_password,
                )
            )
            # The registry account goes in before the commit: if writing htpasswd fails, no team
            # exists that could not push.
            set_htpasswd(config, namespace, registry_password)
    except IntegrityError:
        raise UsageError(f"A team with the name '{name}' or email '{email}' already exists.") from None
    finally:
        database.dispose()
    return NewTeam(
        name=name,
        email=email,
        namespace=namespace,
        registry_url=f"{config.registry}/{namespace}",
        registry_username=namespace,
    )


def set_password(data_dir: Path, *, email: str, password: str) -> None:
    """Replace a team's password and end its sessions (a reset is usually a response to a leak)."""
    from contestkit.server.db import AuthToken

    config = load_config(data_dir)
    auth.check_password_rules(password)
    database = Database(config.database())
    try:
        with database.session() as session:
            team = session.scalar(select(Team).where(Team.email == email.strip().lower()))
            if team is None:
                raise UsageError(f"No team has the email '{email}'.")
            team.password_hash = auth.hash_password(password)
            session.query(AuthToken).filter(AuthToken.team_id == team.id, AuthToken.kind == "session").delete()
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
