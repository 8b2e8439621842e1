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

from contestkit import yamlconfig
from contestkit.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from contestkit.env.levellist import LevelName
    from contestkit.server.config import ServerConfig

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
    yamlconfig.check_keys(yamlconfig.Section.from_dict(value, where), allowed)
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


def levels_of(config: ServerConfig, kind: PhaseKind) -> list[LevelName]:
    """The level set of a phase, read fresh (a host may edit it between jobs)."""
    plan = contest_plan(config)
    phase = plan.leaderboard if kind is PhaseKind.LEADERBOARD else plan.final
    if phase is None:
        raise UsageError("This contest has no final phase; add phases.final with its levels to server.yaml.")
    return config.levels(phase.levels_file)


# -- moments the host sets (in the database, so that a running server sees them at once) -----------


def state_at(db: Session, key: StateKey) -> float | None:
    from contestkit.server.storage.db import ContestState

    row = db.get(ContestState, key.value)
    return None if row is None else row.at


def set_state(db: Session, key: StateKey, at: float, actor: str) -> bool:
    """Record a moment once; False when it was recorded already (the first one stands)."""
    from contestkit.server.storage.db import ContestState

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


# -- where the contest stands, in one line (the server's log, /host, the pages and the CLI say the same) --


class PhaseState(str, Enum):
    """Where the contest stands now."""

    NOT_OPEN = "not-open"  # before the leaderboard phase opens
    OPEN = "open"
    CLOSED = "closed"  # submissions closed, no final running
    FINAL_RUNNING = "final-running"
    PUBLISHED = "published"  # the final's results are public


@dataclass(frozen=True)
class ContestPhase:
    """The phase now, with the moments that define it; ``line`` is the one sentence everyone is shown."""

    state: PhaseState
    opens: float | None
    closes: float | None  # the configured closing time (None: when the host closes)
    closed: float | None  # when submissions actually closed
    frozen: float | None  # the public board counts only jobs finished before this (once it passed)
    final_started: float | None
    published: float | None
    line: str

    def document(self) -> dict[str, Any]:
        """The API's and the CLI's ``phase`` object."""
        return {
            "state": self.state.value,
            "line": self.line,
            "opens": self.opens,
            "closes": self.closes,
            "closed": self.closed,
            "frozen": self.frozen,
            "final_started": self.final_started,
            "published": self.published,
        }


def frozen_since(config: ServerConfig, at: float) -> float | None:
    """The freeze moment once it has passed (the public board then stops changing), else None."""
    freeze = contest_plan(config).freeze_at
    return freeze if freeze is not None and at >= freeze else None


def phase_line(phase: ContestPhase) -> str:
    """The one sentence: open until X, closed since X, frozen since X, final running or published."""
    if phase.state is PhaseState.PUBLISHED:
        text = f"Final results published at {format_time(phase.published or 0.0)}"
    elif phase.state is PhaseState.FINAL_RUNNING:
        text = f"Closed since {format_time(phase.closed or 0.0)}; the final is running"
    elif phase.state is PhaseState.CLOSED:
        text = f"Closed since {format_time(phase.closed or 0.0)}"
    elif phase.state is PhaseState.NOT_OPEN:
        text = f"Not open yet: submissions open at {format_time(phase.opens or 0.0)}"
    elif phase.closes is not None:
        text = f"Open until {format_time(phase.closes)}"
    else:
        text = "Open until the host closes submissions"
    if phase.frozen is not None and phase.state is not PhaseState.PUBLISHED:
        text += f"; the leaderboard is frozen since {format_time(phase.frozen)}"
    return text + "."


def current_phase(db: Session, config: ServerConfig, at: float, *, host: bool = False) -> ContestPhase:
    """The phase at ``at``, from server.yaml's times and the moments the host set.

    Only the host (``host``: /host, ``server status``, the start log) is told that the final runs: to
    teams and visitors the contest stays "closed" until the results are published, so that no public
    answer changes when ``final start`` queues the hidden jobs."""
    board = contest_plan(config).leaderboard
    closed = closed_at(db, config, at)
    started = state_at(db, StateKey.FINAL_STARTED) if host else None
    published = state_at(db, StateKey.FINAL_PUBLISHED)
    if published is not None:
        state = PhaseState.PUBLISHED
    elif started is not None:
        state = PhaseState.FINAL_RUNNING
    elif closed is not None:
        state = PhaseState.CLOSED
    elif board.opens is not None and at < board.opens:
        state = PhaseState.NOT_OPEN
    else:
        state = PhaseState.OPEN
    draft = ContestPhase(
        state, board.opens, board.closes, closed, frozen_since(config, at), started, published, line=""
    )
    return ContestPhase(**{**draft.__dict__, "line": phase_line(draft)})


def plan_warnings(config: ServerConfig, at: float) -> list[str]:
    """What in the plan is most likely a mistake (a pasted example with old dates), said at start."""
    plan = contest_plan(config)
    board = plan.leaderboard
    warnings = []
    if board.closes is not None and board.closes <= at:
        opened = f"opens {format_time(board.opens)} and " if board.opens is not None else ""
        warnings.append(
            f"The submission window is entirely in the past (phases.leaderboard {opened}closes "
            f"{format_time(board.closes)}): no team can submit. Change the dates in server.yaml if that is not "
            "what you meant."
        )
    if plan.freeze_at is not None and board.opens is not None and plan.freeze_at < board.opens:
        warnings.append(
            f"freeze_at ({format_time(plan.freeze_at)}) is before phases.leaderboard.opens "
            f"({format_time(board.opens)}): the public leaderboard stays empty for the whole contest."
        )
    return warnings
