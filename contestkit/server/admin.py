"""What the organiser does from the shell: create a contest data directory and add teams.

Each team gets a namespace in the one registry (``HOST:PORT/<namespace>/...``) and a registry account
named after it. The registry uses token auth: the contest server is its token issuer and grants a
team ``pull,push`` under its own namespace only (``registry_auth``), so teams cannot read, overwrite
or delete each other's images. Registry passwords are derived, not stored (``registry_auth``).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from contestkit.errors import ContestkitError, UsageError
from contestkit.server import auth, registry_auth
from contestkit.server.config import (
    ADMIN_USERNAME,
    CONFIG_NAME,
    EVALUATOR_USERNAME,
    LEVELS_NAME,
    ServerConfig,
    load_config,
    read_levels,
    validate,
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
    notes: list[str]


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
    server_url: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
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
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both (or neither).")
    if registry_scheme is None:
        host = registry.rsplit(":", 1)[0]
        local = host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")
        registry_scheme = "http" if local and tls_cert is None else "https"
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
        registry_admin_password=secrets.token_urlsafe(24),
        server_url=server_url,
        tls_cert="tls/cert.pem" if tls_cert else None,
        tls_key="tls/key.pem" if tls_key else None,
        data_dir=data_dir,
    )
    if force and (data_dir / CONFIG_NAME).exists():
        # Keep the evaluator's and admin's registry passwords: running pulls and scripts rely on them.
        previous = load_config(data_dir)
        config.evaluator_registry_password = previous.evaluator_registry_password or config.evaluator_registry_password
        config.registry_admin_password = previous.registry_admin_password or config.registry_admin_password
    validate(config)
    tls_files = [(Path(tls_cert), "cert.pem"), (Path(tls_key), "key.pem")] if tls_cert and tls_key else []
    for source, _ in tls_files:
        if not source.is_file():
            raise UsageError(f"The TLS file {source} does not exist; pass the PEM certificate and its key.")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if Path(levels_file).absolute() != (data_dir / LEVELS_NAME):
        shutil.copyfile(levels_file, data_dir / LEVELS_NAME)
    config.jobs_dir.mkdir(exist_ok=True)
    for source, name in tls_files:
        target = data_dir / "tls" / name
        target.parent.mkdir(mode=0o700, exist_ok=True)
        if source.absolute() != target:
            shutil.copyfile(source, target)
        target.chmod(0o600)
    config.save()
    notes = registry_auth.prepare_data_dir(config)
    registry_config = config.registry_dir / "config.yml"
    database = Database(config.database())
    try:
        migrate(database)
    finally:
        database.dispose()
    return InitResult(config=config, registry_config=registry_config, warnings=warnings, notes=notes)


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


def check_text(value: str, what: str, limit: int) -> None:
    """Refuse text the teams table cannot hold: too long, not valid Unicode, or control characters."""
    if not auth.encodable(value) or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise UsageError(f"The team {what} contains characters that cannot be stored; use printable text.")
    if len(value) > limit:
        raise UsageError(f"The team {what} has {len(value)} characters; use at most {limit}.")


def _database_failure(exc: SQLAlchemyError) -> ContestkitError:
    """One sentence for a failed write: the error's kind only, since its text quotes the row's values,
    the team's password hash among them."""
    kind = type(getattr(exc, "orig", None) or exc).__name__
    return ContestkitError(
        f"The database refused the new team ({kind}), so nothing was added; check that the database is "
        "reachable and the team's details are valid, then run add-team again."
    )


def add_team(data_dir: Path, *, name: str, email: str, password: str, namespace: str | None = None) -> NewTeam:
    """Create a team with its login, its registry namespace and its registry account.

    The registry account needs nothing written: its password is derived from the team's id (see
    ``registry_auth``), and the realm reads the team from the database at each token request, so a
    team added while the registry runs can log in at once.
    """
    config = load_config(data_dir)
    name = name.strip()
    email = email.strip().lower()
    if not name:
        raise UsageError(f"The team name must have 1 to {NAME_MAX} characters.")
    check_text(name, "name", NAME_MAX)
    check_text(email, "email", EMAIL_MAX)
    if not _EMAIL.match(email):
        raise UsageError(f"'{email}' is not an email address.")
    auth.check_password_rules(password)
    namespace = namespace or namespace_for(name)
    if not _NAMESPACE.match(namespace) or len(namespace) > NAMESPACE_MAX:
        raise UsageError(
            f"The registry namespace '{namespace}' is not valid: use lower-case letters and digits, separated "
            f"by single '.', '_' or '-', at most {NAMESPACE_MAX} characters (pass --namespace to choose one)."
        )
    if namespace in (EVALUATOR_USERNAME, ADMIN_USERNAME):
        raise UsageError(f"'{namespace}' is reserved for the server's own registry account; choose another name.")
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
                    )
                )
        except IntegrityError:
            raise UsageError(f"A team with the name '{name}' or email '{email}' already exists.") from None
        except SQLAlchemyError as exc:
            raise _database_failure(exc) from None
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
    """Replace a team's password, end its sessions, revoke its API tokens and rotate its registry password.

    A reset is usually a response to a leak: whoever had the old password may have minted API tokens
    with it, and read the registry password from /rest/user, so those go too; the team logs in again,
    creates new tokens and runs `contestkit registry login` again.
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
            team.registry_generation += 1
            db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    finally:
        database.dispose()


def rotate_registry_password(data_dir: Path, *, email: str) -> None:
    """Give a team a new registry password; the old one gets no token from now on.

    Tokens already issued stay valid until they expire (``registry_token_ttl``, minutes): the registry
    checks tokens, not passwords, and has no way to recall one.
    """
    config = load_config(data_dir)
    database = Database(config.database())
    try:
        migrate(database)
        with database.session() as db:
            address = email.strip().lower()
            found = (
                db.execute(
                    update(Team)
                    .where(Team.email == address)
                    .values(registry_generation=Team.registry_generation + 1)
                    .returning(Team.id)
                ).first()
                if auth.encodable(address)
                else None
            )
            if found is None:
                raise UsageError(f"No team has the email '{email}'.")
    finally:
        database.dispose()
