"""Teams: adding them, their passwords and registry accounts, and the host's controls over them.

Why one module: whether a team is added from the shell (``contestkit server add-team``), reset by
the host's CLI (``contestkit server teams ...``) or through the admin API, the same rules apply (the
name and email checks, what a new password revokes), and they are written once, here. The host's
actions are recorded with who did them (``hosting.record``), in the same transaction as the change.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from contestkit.errors import ContestkitError, UsageError
from contestkit.server.config import ADMIN_USERNAME, EVALUATOR_USERNAME, ServerConfig, load_config
from contestkit.server.contest import team_names
from contestkit.server.contest.hosting import HostAction, record
from contestkit.server.errors import Conflict, Invalid, NotFound
from contestkit.server.queue import operations
from contestkit.server.security import auth
from contestkit.server.storage.db import ACTIVE, AuthToken, Database, Job, Team, now
from contestkit.server.storage.migrations import migrate

_NAMESPACE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The lengths of the teams table's columns: checked up front, so that no database refuses them later.
NAME_MAX = 64
EMAIL_MAX = 254
NAMESPACE_MAX = 48  # the column holds 64; registry namespaces are kept shorter


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
    name = team_names.normalise(name)
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
                look_alike = team_names.confusable_with(db, name)
                if look_alike is not None and look_alike != name:
                    raise UsageError(
                        f"The team name '{name}' looks like the existing team '{look_alike}'; choose another name."
                    )
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


def _new_password(db: Session, team: Team, password: str) -> None:
    """What a new password does, from the shell or by the host: its sessions end, its API tokens are
    revoked and its registry password rotates (a reset usually answers a leak)."""
    team.password_hash = auth.hash_password(password)
    team.registry_generation += 1
    db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))


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
            _new_password(db, team, password)
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


# -- the host's controls -------------------------------------------------------------------------


def find_team(db: Session, ref: str) -> Team:
    """A team by email, name or id (the host types whichever is at hand)."""
    ref = ref.strip()
    conditions = [Team.email == ref.lower(), Team.name == ref]
    if ref.isdigit() and int(ref) <= operations.MAX_ID:
        conditions.append(Team.id == int(ref))
    team = db.scalars(select(Team).where(or_(*conditions)).order_by(Team.id)).first() if auth.encodable(ref) else None
    if team is None:
        raise NotFound(f"No team has the email, name or id '{ref}'; `contestkit server teams list` shows them.")
    return team


def team_document(team: Team, jobs: int = 0) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "email": team.email,
        "namespace": team.namespace,
        "disabled": bool(team.disabled),
        "removed": team.removed_at is not None,
        "jobs": jobs,
        "created": team.created_at,
    }


def list_teams(db: Session, *, include_removed: bool = False) -> list[dict[str, Any]]:
    counts = {team_id: n for team_id, n in db.execute(select(Job.team_id, func.count(Job.id)).group_by(Job.team_id))}
    query = select(Team).order_by(Team.id)
    if not include_removed:
        query = query.where(Team.removed_at.is_(None))
    return [team_document(team, counts.get(team.id, 0)) for team in db.scalars(query)]


def set_disabled(db: Session, actor: str, ref: str, disabled: bool) -> dict[str, Any]:
    """Disable (or enable) a team: a disabled one cannot log in or submit; its jobs and scores stay.

    Its sessions and tokens end at once, so that a team already logged in is locked out too."""
    team = find_team(db, ref)
    if team.removed_at is not None:
        raise Conflict(f"The team '{team.name}' was removed; it cannot be enabled again.")
    team.disabled = 1 if disabled else 0
    if disabled:
        db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    record(db, actor, HostAction.TEAM_DISABLE if disabled else HostAction.TEAM_ENABLE, team.email)
    return team_document(team)


def rename(db: Session, actor: str, ref: str, new_name: str) -> dict[str, Any]:
    team = find_team(db, ref)
    try:
        new_name = team_names.normalise(new_name)
    except UsageError as exc:
        raise Invalid(str(exc)) from None
    if not new_name:
        raise Invalid(f"The team name must have 1 to {NAME_MAX} characters.")
    try:
        check_text(new_name, "name", NAME_MAX)
    except UsageError as exc:
        raise Invalid(str(exc)) from None
    if db.scalar(select(Team.id).where(Team.name == new_name, Team.id != team.id)) is not None:
        raise Conflict(f"A team named '{new_name}' already exists; choose another name.")
    look_alike = team_names.confusable_with(db, new_name, team_id=team.id)
    if look_alike is not None:
        raise Conflict(f"The team name '{new_name}' looks like the existing team '{look_alike}'; choose another name.")
    old = team.name
    team.name = new_name
    record(db, actor, HostAction.TEAM_RENAME, team.email, f"{old} -> {new_name}")
    return team_document(team)


def reset_password(db: Session, actor: str, ref: str, password: str) -> dict[str, Any]:
    """A new password; the team's sessions end, its API tokens are revoked, its registry password rotates."""
    try:
        auth.check_password_rules(password)
    except UsageError as exc:
        raise Invalid(str(exc)) from None
    team = find_team(db, ref)
    _new_password(db, team, password)
    record(db, actor, HostAction.TEAM_RESET_PASSWORD, team.email)
    return team_document(team)


def remove(db: Session, config: ServerConfig, actor: str, ref: str, *, purge: bool = False) -> dict[str, Any]:
    """Remove a team. Its jobs are kept for the record (the team is hidden and locked out, its email
    freed for a new account) unless ``purge``: then the team, its jobs and their results go."""
    team = find_team(db, ref)
    document = team_document(team)
    active = db.scalar(select(Job.id).where(Job.team_id == team.id, Job.status.in_(ACTIVE)))
    if active is not None:
        raise Conflict(f"The team '{team.name}' has job {active} queued or running; cancel it first.")
    if purge:
        job_ids = list(db.scalars(select(Job.id).where(Job.team_id == team.id)))
        db.execute(delete(Job).where(Job.team_id == team.id))
        db.execute(delete(Team).where(Team.id == team.id))
        record(db, actor, HostAction.TEAM_PURGE, document["email"], f"{document['name']}; jobs {job_ids}")
        db.flush()
        for job_id in job_ids:
            shutil.rmtree(config.jobs_dir / str(job_id), ignore_errors=True)
        document["removed"] = True
        return document
    stamp = now()
    team.removed_at = stamp
    team.disabled = 1
    team.email = f"removed-{team.id}-{int(stamp)}.{team.email}"[:254]
    db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    record(db, actor, HostAction.TEAM_REMOVE, document["email"], document["name"])
    document.update(removed=True, disabled=True)
    return document
