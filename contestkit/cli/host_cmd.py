"""``contestkit server teams|jobs|actions|close|final|export``: the host's controls, on the server's host.

They open the contest database directly (like ``add-team``), so they work whether or not the server
runs; a running server sees their changes at its next request (a disabled team's next call is refused,
a cancelled job stops at its next heartbeat). The same operations are the admin API's (``hosting``);
each is recorded as done by ``cli:<unix user>``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from contestkit.cli.output import console, err_console, print_json, shown
from contestkit.cli.server_cmd import _DATA_DIR, _needs_server_extra, _read_password, server_app
from contestkit.env.scoring import plural
from contestkit.errors import UsageError
from contestkit.states import TERMINAL_LEVEL_STATES

_JSON = typer.Option(False, "--json", help="Print one JSON document.")

teams_app = typer.Typer(
    help="The contest's teams: `teams list|disable|enable|rename|reset-password|remove`.", no_args_is_help=True
)
jobs_app = typer.Typer(
    help="Every team's jobs: `jobs [--all] [--json]`, `jobs cancel|restart|rerun-level`.",
    invoke_without_command=True,
)


@contextmanager
def _contest(data_dir: Path) -> Iterator[tuple[Any, Any]]:
    """(config, session) on the contest's database, committed when the block ends."""
    _needs_server_extra()
    from contestkit.server.config import load_config
    from contestkit.server.storage.db import Database
    from contestkit.server.storage.migrations import migrate

    config = load_config(data_dir)
    database = Database(config.database())
    try:
        migrate(database)
        with database.session() as db:
            yield config, db
    finally:
        database.dispose()


def _actor() -> str:
    from contestkit.server.contest.hosting import cli_actor

    return cli_actor()


def _when(stamp: float | None) -> str:
    from contestkit.server.contest.phases import format_time

    return "" if stamp is None else format_time(stamp)


def _say_team(document: dict[str, Any], what: str, json_out: bool) -> None:
    if json_out:
        print_json(document)
    else:
        console.print(f"[green]Team '{shown(document['name'])}' {what}[/].", soft_wrap=True)


# -- teams --


@teams_app.command("list")
def teams_list(
    removed: bool = typer.Option(False, "--removed", help="List removed teams too."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Every team with its email, namespace, state and number of jobs."""
    from contestkit.server.contest import teams as team_admin

    with _contest(data_dir) as (_config, db):
        teams = team_admin.list_teams(db, include_removed=removed)
    if json_out:
        print_json({"teams": teams})
        return
    table = Table("id", "name", "email", "namespace", "state", "jobs")
    for team in teams:
        state = "removed" if team["removed"] else "disabled" if team["disabled"] else "active"
        table.add_row(str(team["id"]), shown(team["name"]), team["email"], team["namespace"], state, str(team["jobs"]))
    console.print(table)


@teams_app.command("disable")
def teams_disable(
    team: str = typer.Argument(..., help="The team's email, name or id."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Lock a team out: it cannot log in or submit (its sessions end); its jobs and scores stay."""
    from contestkit.server.contest import teams as team_admin

    with _contest(data_dir) as (_config, db):
        document = team_admin.set_disabled(db, _actor(), team, True)
    _say_team(document, "disabled", json_out)


@teams_app.command("enable")
def teams_enable(
    team: str = typer.Argument(..., help="The team's email, name or id."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Let a disabled team log in and submit again."""
    from contestkit.server.contest import teams as team_admin

    with _contest(data_dir) as (_config, db):
        document = team_admin.set_disabled(db, _actor(), team, False)
    _say_team(document, "enabled", json_out)


@teams_app.command("rename")
def teams_rename(
    team: str = typer.Argument(..., help="The team's email, name or id."),
    new_name: str = typer.Argument(..., help="The name the leaderboard shows from now on."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Rename a team (its login, registry namespace and jobs stay)."""
    from contestkit.server.contest import teams as team_admin

    with _contest(data_dir) as (_config, db):
        document = team_admin.rename(db, _actor(), team, new_name)
    _say_team(document, "renamed", json_out)


@teams_app.command("reset-password")
def teams_reset_password(
    team: str = typer.Argument(..., help="The team's email, name or id."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """A new password: the team's sessions end, its API tokens are revoked, its registry password rotates."""
    from contestkit.server.contest import teams as team_admin

    password = _read_password(password_stdin)
    with _contest(data_dir) as (_config, db):
        document = team_admin.reset_password(db, _actor(), team, password)
    _say_team(document, "has a new password (sessions ended, tokens revoked, registry password rotated)", json_out)


@teams_app.command("remove")
def teams_remove(
    team: str = typer.Argument(..., help="The team's email, name or id."),
    yes: bool = typer.Option(False, "--yes", help="Really remove it (required)."),
    purge: bool = typer.Option(False, "--purge", help="Delete its jobs and their results too (default: kept)."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Remove a team: locked out and hidden, its jobs kept for the record unless --purge."""
    from contestkit.server.contest import teams as team_admin

    if not yes:
        raise UsageError(f"Removing the team '{team}' cannot be undone; pass --yes to remove it.")
    with _contest(data_dir) as (config, db):
        document = team_admin.remove(db, config, _actor(), team, purge=purge)
    _say_team(document, "removed with its jobs and results" if purge else "removed (its jobs are kept)", json_out)


# -- jobs --


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    all_jobs: bool = typer.Option(False, "--all", help="Every job, not only queued and running ones."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """Every team's queued and running jobs (--all: every job, newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    from contestkit.server.contest import hosting

    with _contest(data_dir) as (_config, db):
        jobs = hosting.list_jobs(db, all_jobs=all_jobs)
    if json_out:
        print_json({"jobs": jobs})
        return
    table = Table("id", "team", "phase", "status", "score", "levels", "created")
    for job in jobs:
        done = sum(1 for w in job.get("workers", []) if w["state"] in TERMINAL_LEVEL_STATES)
        score = "" if job.get("score") is None else f"{job['score']:.1f}"
        table.add_row(
            str(job["id"]),
            shown(job["team"]),
            job["phase"],
            job["status"],
            score,
            f"{done}/{len(job.get('workers', []))}",
            _when(job.get("created")),
        )
    console.print(table)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(..., help="The job's id."), data_dir: Path = _DATA_DIR) -> None:
    """Cancel any team's queued or running job (a running one stops at the server's next heartbeat)."""
    from contestkit.server.contest import hosting

    with _contest(data_dir) as (_config, db):
        hosting.cancel_job(db, _actor(), job_id)
    console.print(f"[green]Job {job_id} cancelled[/].")


@jobs_app.command("restart")
def jobs_restart(job_id: int = typer.Argument(..., help="The job's id."), data_dir: Path = _DATA_DIR) -> None:
    """Run any team's ended job again as a new attempt (same image)."""
    from contestkit.server.contest import hosting

    with _contest(data_dir) as (config, db):
        hosting.restart_job(db, config, _actor(), job_id)
    console.print(f"[green]Job {job_id} queued again[/].")


@jobs_app.command("rerun-level")
def jobs_rerun_level(
    job_id: int = typer.Argument(..., help="The job's id."),
    level: str = typer.Argument(..., help="The level's index in the job (0, 1...) or GAME/STATE."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Evaluate one level of an ended job again; the job is scored again when it ends."""
    from contestkit.server.contest import hosting

    with _contest(data_dir) as (_config, db):
        hosting.rerun_level(db, _actor(), job_id, level)
    console.print(f"[green]Level {shown(level)} of job {job_id} queued again[/].")


@server_app.command("actions")
def actions(
    limit: int = typer.Option(50, "--limit", help="How many of the latest actions."),
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
) -> None:
    """The record of host actions: who did what to what, newest first."""
    from contestkit.server.contest import hosting

    with _contest(data_dir) as (_config, db):
        rows = hosting.actions(db, max(1, limit))
    if json_out:
        print_json({"actions": rows})
        return
    table = Table("when", "who", "action", "target", "detail")
    for row in rows:
        table.add_row(
            _when(row["at"]),
            shown(row["actor"]),
            row["action"],
            shown(row["target"] or ""),
            shown(row["detail"] or ""),
        )
    console.print(table)


@server_app.command("status")
def status(data_dir: Path = _DATA_DIR, json_out: bool = _JSON) -> None:
    """Where the contest stands: its phase in one line (as the pages and /host say it), plan warnings, the
    registry's health and the queue."""
    from contestkit.server.config import ExecutorKind
    from contestkit.server.contest import hosting, phases
    from contestkit.server.deployment.registry_supervision import RegistryProbe
    from contestkit.server.storage.db import now

    with _contest(data_dir) as (config, db):
        at = now()
        phase = phases.current_phase(db, config, at, host=True)
        warnings = phases.plan_warnings(config, at)
        queue = hosting.queue_counts(db)
    registry_ok, registry_detail = RegistryProbe(config).check()
    if config.executor == ExecutorKind.KUBERNETES:
        from contestkit.server.executors import network_policy

        warnings.extend(filter(None, [network_policy.read_notice(config.data_dir)]))  # as the server left it
    if json_out:
        print_json(
            {
                "phase": phase.document(),
                "warnings": warnings,
                "registry": {"ok": registry_ok, "detail": registry_detail},
                "queue": queue,
            }
        )
        return
    console.print(shown(phase.line), soft_wrap=True)
    console.print(f"Registry: {'up' if registry_ok else 'DOWN'} ({shown(registry_detail)}).", soft_wrap=True)
    console.print(f"Queue: {queue['queued']} queued, {queue['running']} running.")
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {shown(warning)}", soft_wrap=True)


@server_app.command("close")
def close(data_dir: Path = _DATA_DIR, json_out: bool = _JSON) -> None:
    """Close submissions now (the leaderboard phase ends; queued and running jobs still finish)."""
    from contestkit.server.contest import hosting
    from contestkit.server.storage.db import now

    with _contest(data_dir) as (config, db):
        closed = hosting.close_submissions(db, config, _actor(), now())
    if json_out:
        print_json({"closed": closed})
    else:
        console.print(f"[green]Submissions closed[/] at {_when(closed)}.")


# -- the final --

final_app = typer.Typer(help="The hidden final: `final start|status|publish`.", no_args_is_help=True)


def _print_final(document: dict[str, Any]) -> None:
    started = f"started {_when(document['started'])}" if document.get("started") else "not started"
    published = f"published {_when(document['published'])}" if document.get("published") else "not published"
    console.print(f"Final: {started}; {published}; levels: {shown(', '.join(document['levels']))}.")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(document["jobs"].items())) or "no final job yet"
    console.print(f"Final jobs: {counts}.")
    without = document.get("without_entry") or []
    if without:
        names = ", ".join(shown(name) for name in without)
        console.print(f"No final job for {plural(len(without), 'team')} without a finished submission: {names}.")
    table = Table("#", "team", "score", "final job", "submission")
    for row in document["ranking"]:
        name = shown(row["name"]) + (" (baseline)" if row.get("baseline") else "")
        table.add_row(str(row["rank"]), name, f"{row['score']:.2f}", str(row["job"]), str(row["submission"]))
    if document["ranking"]:
        console.print(table)


@final_app.command("start")
def final_start(data_dir: Path = _DATA_DIR, json_out: bool = _JSON) -> None:
    """Queue each team's selected submission on the final levels; run again after a crash (no team twice)."""
    _needs_server_extra()
    from contestkit.server.config import load_config
    from contestkit.server.contest import final
    from contestkit.server.storage.db import Database, now
    from contestkit.server.storage.migrations import migrate

    config = load_config(data_dir)
    database = Database(config.database())
    try:
        migrate(database)
        document = final.start(database, config, _actor(), now())
    finally:
        database.dispose()
    if json_out:
        print_json(document)
    else:
        _print_final(document)


@final_app.command("status")
def final_status(
    data_dir: Path = _DATA_DIR,
    json_out: bool = _JSON,
    watch: bool = typer.Option(
        False, "--watch", help="Print it again whenever it changes, until no final job is queued or running."
    ),
) -> None:
    """The final's progress and its ranking so far (the host's eyes only until publish)."""
    from contestkit.cli.contest_cmd import _poll_seconds
    from contestkit.server.contest import final

    last = None
    while True:
        with _contest(data_dir) as (config, db):
            document = final.status(db, config)
        if document != last:
            if json_out:
                print_json(document)
            else:
                _print_final(document)
            last = document
        if not watch or not final.running(document):
            return
        time.sleep(_poll_seconds())


@final_app.command("publish")
def final_publish(data_dir: Path = _DATA_DIR, json_out: bool = _JSON) -> None:
    """Make the final ranking public (GET /rest/leaderboard/final), once every final job ended."""
    _needs_server_extra()
    from contestkit.server.config import load_config
    from contestkit.server.contest import final
    from contestkit.server.storage.db import Database, now
    from contestkit.server.storage.migrations import migrate

    config = load_config(data_dir)
    database = Database(config.database())
    try:
        migrate(database)
        published = final.publish(database, config, _actor(), now())
    finally:
        database.dispose()
    if json_out:
        print_json({"published": published})
    else:
        console.print(f"[green]Final results published[/] at {_when(published)}.")


class ExportFormat(str, Enum):
    CSV = "csv"
    JSON = "json"


@server_app.command("export")
def export(
    fmt: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="csv or json."),
    final_board: bool = typer.Option(False, "--final", help="The final's ranking instead of the leaderboard."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Export the live leaderboard (or --final ranking) with every level's score, baselines marked."""
    from contestkit.server.contest import leaderboards

    with _contest(data_dir) as (config, db):
        text = leaderboards.export(db, config, fmt=fmt.value, final=final_board)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"[green]Exported[/] to {output}.", soft_wrap=True)


def select(
    job_id: int = typer.Argument(..., help="Your finished job whose image the final evaluates."),
    json_out: bool = _JSON,
) -> None:
    """Choose the submission the hidden final evaluates (before the close, when the host lets teams choose)."""
    from contestkit.client.api_client import ContestClient
    from contestkit.client.credentials import load_login

    answer = ContestClient.from_login(load_login()).select(job_id)
    if json_out:
        print_json(answer)
    else:
        console.print(f"[green]Job {job_id} is your submission for the final[/].")


def register(app: typer.Typer) -> None:
    """Called by ``contestkit.cli``: the host's groups join ``contestkit server``; ``select`` is a team's."""
    server_app.add_typer(teams_app, name="teams")
    server_app.add_typer(jobs_app, name="jobs")
    server_app.add_typer(final_app, name="final")
    app.command("select")(select)
