"""The contest's plan: its phases, their level sets and submission windows, ranking and freeze.

The 2018 contest ran in two phases: while submissions were open, each submission was evaluated on a
leaderboard level set; after the close, each team's latest submission was evaluated on a hidden
final set. ``server.yaml`` describes that as::

    phases:
      leaderboard:
        levels: levels.csv              # default: levels_file
        opens: 2018-04-05T00:00:00Z     # UTC, ISO 8601; absent: open now
        closes: 2018-06-05T00:00:00Z    # absent: open until `contestkit server close`
        quota: {per_day: 5, per_phase: 100, total: 100, count_failed: false}
      final:
        levels: final-levels.csv        # hidden: its names never leave the server before publish
        priority: 10                    # final jobs go before leaderboard ones in the queue
        selection: latest               # or `team`: teams may choose with `contestkit select JOB`
    ranking: latest                     # or best
    freeze_at: 2018-06-01T00:00:00Z     # the public leaderboard stops changing from then on

A data directory without ``phases`` is one leaderboard phase on ``levels_file``, open until the host
closes it, as before. Why one module: the window, the level set of each phase and the ranking are
read in several places (submit, the final, the leaderboards); each rule is written here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from contestkit.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from contestkit.server.config import LevelSpec, ServerConfig

Clock = Callable[[], float]


class PhaseKind(str, Enum):
    LEADERBOARD = "leaderboard"
    FINAL = "final"


class Ranking(str, Enum):
    """Which finished job of a team the leaderboard ranks."""

    LATEST = "latest"  # as in 2018
    BEST = "best"


class Selection(str, Enum):
    """Which leaderboard job of a team the final evaluates."""

    LATEST = "latest"  # its latest finished one, as in 2018
    TEAM = "team"  # the one it chose with `contestkit select JOB` (else its latest finished one)


class StateKey(str, Enum):
    """Moments the host sets, kept in the ``contest_state`` table."""

    CLOSED = "closed"
    FINAL_STARTED = "final_started"
    FINAL_PUBLISHED = "final_published"


@dataclass(frozen=True)
class Quota:
    per_day: int | None = None  # in any 24 hours
    per_phase: int | None = None  # leaderboard submissions in the phase
    total: int | None = None  # submissions over the whole contest
    count_failed: bool = True  # whether failed jobs use up the quota


@dataclass(frozen=True)
class Phase:
    kind: PhaseKind
    levels_file: str
    opens: float | None = None
    closes: float | None = None
    quota: Quota = Quota()
    priority: int = 0
    selection: Selection = Selection.LATEST


@dataclass(frozen=True)
class ContestPlan:
    leaderboard: Phase
    final: Phase | None
    ranking: Ranking
    freeze_at: float | None


def parse_time(value: Any, where: str) -> float:
    """UNIX seconds of a UTC ISO 8601 time (YAML may already have made it a datetime)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"{where} '{value}' is not a time; write it in UTC as ISO 8601, e.g. 2018-06-05T00:00:00Z."
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(stamp: float) -> str:
    """How times appear in answers and tables: UTC, to the second."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_PHASE_KEYS = {
    PhaseKind.LEADERBOARD: {"levels", "opens", "closes", "quota"},
    PhaseKind.FINAL: {"levels", "priority", "selection"},
}
_QUOTA_KEYS = {"per_day", "per_phase", "total", "count_failed"}


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a mapping of settings ({', '.join(sorted(allowed))}).")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UsageError(f"{where} has the unknown key '{unknown[0]}'; valid keys are {', '.join(sorted(allowed))}.")
    return value


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where} must be a whole number of at least 1 (leave it out for no limit).")
    return value


def contest_plan(config: ServerConfig) -> ContestPlan:
    """The plan ``server.yaml`` describes; every mistake in it is one sentence naming the key."""
    raw = _mapping(config.phases, "phases", {kind.value for kind in PhaseKind})
    board = _mapping(raw.get(PhaseKind.LEADERBOARD.value), "phases.leaderboard", _PHASE_KEYS[PhaseKind.LEADERBOARD])
    quota_raw = _mapping(board.get("quota"), "phases.leaderboard.quota", _QUOTA_KEYS)
    count_failed = quota_raw.get("count_failed", True)
    if not isinstance(count_failed, bool):
        raise UsageError("phases.leaderboard.quota.count_failed must be true or false.")
    quota = Quota(
        per_day=_count(quota_raw.get("per_day"), "phases.leaderboard.quota.per_day"),
        per_phase=_count(quota_raw.get("per_phase"), "phases.leaderboard.quota.per_phase"),
        total=_count(quota_raw.get("total"), "phases.leaderboard.quota.total"),
        count_failed=count_failed,
    )
    opens = parse_time(board["opens"], "phases.leaderboard.opens") if board.get("opens") is not None else None
    closes = parse_time(board["closes"], "phases.leaderboard.closes") if board.get("closes") is not None else None
    if opens is not None and closes is not None and closes <= opens:
        raise UsageError("phases.leaderboard.closes must be after phases.leaderboard.opens.")
    leaderboard = Phase(
        PhaseKind.LEADERBOARD, str(board.get("levels") or config.levels_file), opens, closes, quota=quota
    )
    final = None
    if raw.get(PhaseKind.FINAL.value) is not None:
        spec = _mapping(raw[PhaseKind.FINAL.value], "phases.final", _PHASE_KEYS[PhaseKind.FINAL])
        if not spec.get("levels"):
            raise UsageError("phases.final needs 'levels': the CSV of the hidden final level set.")
        priority = spec.get("priority", 10)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise UsageError("phases.final.priority must be a whole number (higher runs first).")
        try:
            selection = Selection(spec.get("selection", Selection.LATEST.value))
        except ValueError:
            raise UsageError("phases.final.selection must be 'latest' or 'team'.") from None
        final = Phase(PhaseKind.FINAL, str(spec["levels"]), priority=priority, selection=selection)
    try:
        ranking = Ranking(config.ranking)
    except ValueError:
        raise UsageError(f"ranking must be 'latest' or 'best', not '{config.ranking}'.") from None
    freeze = parse_time(config.freeze_at, "freeze_at") if config.freeze_at else None
    return ContestPlan(leaderboard, final, ranking, freeze)


def levels_of(config: ServerConfig, kind: PhaseKind) -> list[LevelSpec]:
    """The level set of a phase, read fresh (a host may edit it between jobs)."""
    plan = contest_plan(config)
    phase = plan.leaderboard if kind is PhaseKind.LEADERBOARD else plan.final
    if phase is None:
        raise UsageError("This contest has no final phase; add phases.final with its levels to server.yaml.")
    return config.levels(phase.levels_file)


# -- moments the host sets (in the database, so that a running server sees them at once) -----------


def state_at(db: Session, key: StateKey) -> float | None:
    from contestkit.server.db import ContestState

    row = db.get(ContestState, key.value)
    return None if row is None else row.at


def set_state(db: Session, key: StateKey, at: float, actor: str) -> bool:
    """Record a moment once; False when it was recorded already (the first one stands)."""
    from contestkit.server.db import ContestState

    if db.get(ContestState, key.value) is not None:
        return False
    db.add(ContestState(key=key.value, at=at, actor=actor))
    db.flush()
    return True


def closed_at(db: Session, config: ServerConfig, at: float) -> float | None:
    """When submissions closed (by the configured time or by the host), None while they are open."""
    closes = contest_plan(config).leaderboard.closes
    by_host = state_at(db, StateKey.CLOSED)
    moments = [m for m in (closes, by_host) if m is not None and m <= at]
    return min(moments) if moments else None


def check_window(db: Session, config: ServerConfig, at: float) -> None:
    """Refuse a submission outside the leaderboard phase's window, saying when it opens or that it closed.

    The window is [opens, closes): a submission at the opening second is in, one at the closing second out.
    """
    from contestkit.server.errors import Forbidden

    phase = contest_plan(config).leaderboard
    if phase.opens is not None and at < phase.opens:
        raise Forbidden(f"Submissions open at {format_time(phase.opens)}; submit again then.")
    closed = closed_at(db, config, at)
    if closed is not None:
        raise Forbidden(f"Submissions closed at {format_time(closed)}; the contest takes no more submissions.")
