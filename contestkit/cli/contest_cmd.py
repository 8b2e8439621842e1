"""Talking to a contest: login, logout, registry, push, submit, jobs, leaderboard.

The commands parse, call ``contestkit.api_client`` / ``contestkit.registry`` and print. Every data
command takes ``--json`` and then prints one JSON document on stdout (the product contract).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn
from rich.table import Table
from typer.core import TyperGroup

from contestkit.api_client import ContestClient
from contestkit.cli.output import console, err_console, print_json
from contestkit.credentials import (
    RegistryCredentials,
    ServerLogin,
    clear_login,
    clear_registry_credentials,
    known_server,
    load_login,
    load_registry_credentials,
    load_stored_login,
    save_login,
    save_registry_credentials,
)
from contestkit.errors import ContestkitError, NotFoundError, UsageError

TERMINAL_STATES = ("finished", "failed", "cancelled")


def _poll_seconds() -> float:
    """How often --watch and --wait ask the server (CONTESTKIT_POLL_SECONDS, default 2 s)."""
    try:
        return max(0.05, float(os.environ.get("CONTESTKIT_POLL_SECONDS", "2")))
    except ValueError:
        return 2.0


def _client() -> ContestClient:
    return ContestClient.from_login(load_login())


def _read_secret(from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise UsageError(
                "--password-stdin read an empty password; pipe it in, e.g. `cat pw.txt | contestkit login ...`."
            )
        return value
    if not sys.stdin.isatty():
        raise UsageError("No terminal to ask for the password on; pass --password-stdin and pipe it in.")
    return typer.prompt(prompt, hide_input=True)


def _t(value: Any) -> str:
    """Text from the server or the user, shown literally (a "[x]" in a team name is not markup)."""
    return escape(str(value))


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "-"


def _score(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# -- login / logout -------------------------------------------------------------------------------


def login(
    server: str = typer.Option(
        None, "--server", help="Contest server URL (default: the last one, or CONTESTKIT_SERVER)."
    ),
    email: str = typer.Option(None, "--email", help="Your team's login email (asked when missing)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Log in to a contest server; the session is kept in $XDG_CONFIG_HOME/contestkit (mode 0600)."""
    url = known_server(server)
    if url is None:
        raise UsageError("Which contest server? Pass --server URL (the organisers give you its address).")
    if not email:
        if not sys.stdin.isatty():
            raise UsageError("Pass --email EMAIL (there is no terminal to ask on).")
        email = typer.prompt("Email")
    password = _read_secret(password_stdin, "Password")
    client = ContestClient(url)
    answer = client.login(email.strip(), password)
    saved = ServerLogin(
        server=client.server,
        cookies=client.cookies(),
        email=email.strip(),
        team=answer.get("team"),
        expires=answer.get("expires"),
    )
    path = save_login(saved)
    clear_registry_credentials()  # they belong to the previous login
    team = f" as team {saved.team}" if saved.team else ""
    until = f" until {_when(saved.expires)}" if saved.expires else ""
    console.print(f"[green]Logged in[/] to {client.server}{_t(team)}{until}.", soft_wrap=True)
    console.print(
        f"Session saved in {path}. Next: `contestkit registry login`, then `contestkit submit TAG`.", soft_wrap=True
    )


def logout() -> None:
    """End the session on the server and forget it (and the registry credentials) here."""
    # The stored session, not CONTESTKIT_TOKEN's: that is the one being forgotten here, so it must
    # end on the server too. A token from the environment is left alone (scripts keep using it).
    stored = load_stored_login()
    credentials = load_registry_credentials()
    if stored is not None:
        try:
            ContestClient.from_login(stored).logout()
        except ContestkitError as exc:
            err_console.print(f"[yellow]warning:[/] {_t(exc)} The local session is forgotten anyway.")
    if credentials is not None and credentials.docker_config:
        from contestkit.registry import docker_cli_logout

        docker_cli_logout(credentials.host)
    clear_login()
    clear_registry_credentials()
    console.print("Logged out.")


# -- registry ------------------------------------------------------------------------------------

registry_app = typer.Typer(name="registry", help="Your team's private image registry.", no_args_is_help=True)


def _fresh_credentials(client: ContestClient) -> RegistryCredentials:
    """The team's registry account as the server has it now (a rotated password is picked up)."""
    credentials = RegistryCredentials.from_user(client.user(), server=client.server)
    previous = load_registry_credentials()
    if previous is not None and previous.url == credentials.url and previous.password == credentials.password:
        credentials.docker_config = previous.docker_config
    save_registry_credentials(credentials)
    return credentials


@registry_app.command("login")
def registry_login(
    docker_config: bool = typer.Option(
        True, "--docker-config/--no-docker-config", help="Also store the login for the docker CLI (`docker push`)."
    ),
) -> None:
    """Get the team's registry credentials from the server and log the Docker engine in to the registry."""
    from contestkit import registry

    credentials = _fresh_credentials(_client())
    status = registry.login(credentials)
    if docker_config:
        credentials.docker_config = registry.docker_cli_login(credentials)
    save_registry_credentials(credentials)
    console.print(f"[green]{status}[/] to {credentials.host} as {credentials.username}.", soft_wrap=True)
    console.print(f"Tag your images {credentials.url}/NAME:TAG, or let `contestkit push TAG` do it.", soft_wrap=True)


@registry_app.command("show")
def registry_show(
    show_password: bool = typer.Option(False, "--show-password", "-p", help="Print the password too."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show the team registry's URL and user name."""
    credentials = _fresh_credentials(_client())
    document = {"url": credentials.url, "username": credentials.username, "scheme": credentials.scheme}
    if show_password:
        document["password"] = credentials.password
    if json_out:
        print_json(document)
        return
    console.print(f"Registry URL: {credentials.url}", soft_wrap=True)
    console.print(f"Username:     {credentials.username}")
    if show_password:
        console.print(f"Password:     {credentials.password}")


@registry_app.command("list")
def registry_list(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the repositories and tags in your team's namespace of the registry."""
    client = _client()
    credentials = _fresh_credentials(client)
    listing = dict(client.registry_repositories().get("repositories") or {})
    if json_out:
        print_json({"registry": credentials.url, "repositories": listing})
        return
    if not listing:
        console.print(f"No images in {credentials.url} yet; `contestkit push TAG` puts one there.", soft_wrap=True)
        return
    table = Table("Repository", "Tags", title=f"{credentials.url}")
    for repository, tags in listing.items():
        table.add_row(f"{credentials.host}/{repository}", ", ".join(tags) or "-")
    console.print(table)


# -- push / submit -------------------------------------------------------------------------------


def _project() -> Any:
    """The agent project around the current directory (``contestkit.yaml``), or None."""
    from contestkit.project import find_project

    return find_project()


def _resolve_image(tag: str | None, credentials: RegistryCredentials, client: Any) -> tuple[str, str, str]:
    """(local source image, team-registry target, job tag ``NAME:TAG``) for ``push``/``submit [TAG]``.

    ``TAG`` alone means the project's image (``contestkit build TAG`` made it; ``agent`` outside a
    project); ``NAME:TAG`` or a full reference names a local image directly, as the 2018 client did.
    """
    from contestkit import imageref
    from contestkit.images import image_present

    project = _project()
    if tag and (":" in tag or "/" in tag):
        ref = imageref.parse(tag)
        tag_name = ref.tag_or_default
        name = ref.repository.rsplit("/", 1)[-1]
        candidates = [str(ref) if ref.digest else f"{ref.name}:{tag_name}"]
    else:
        tag_name = imageref.validate_tag(tag) if tag else imageref.DEFAULT_TAG
        name = project.name if project is not None else "agent"
        candidates = [project.image_ref(tag_name)] if project is not None else []
        candidates.append(f"{name}:{tag_name}")
    target = f"{credentials.url}/{name}:{tag_name}"
    candidates.append(target)
    for candidate in candidates:
        if image_present(candidate, api=client.api):
            return candidate, target, f"{name}:{tag_name}"
    looked = ", ".join(dict.fromkeys(candidates))
    hint = f"`contestkit build {tag_name}`" if project is not None else "`contestkit build` in your agent project"
    raise NotFoundError(f"No local image to push (looked for {looked}); build it first with {hint}.")


class _PushDisplay:
    """A progress bar per layer on a terminal; one line per finished layer otherwise (CI logs)."""

    def __init__(self, image: str, out: Console) -> None:
        self.image = image
        self.out = out
        self.live = out.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=out
        )
        self.tasks: dict[str, TaskID] = {}
        self.done: set[str] = set()

    def __enter__(self) -> _PushDisplay:
        self.out.print(f"Pushing {self.image}", soft_wrap=True)
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, event: Any) -> None:
        finished = event.status in ("Pushed", "Layer already exists") or event.status.startswith("Mounted")
        if self.live:
            task = self.tasks.get(event.layer)
            if task is None:
                task = self.tasks[event.layer] = self.progress.add_task(f"{event.layer} {event.status}", total=None)
            if event.current is not None:
                total = max(event.total or 0, event.current)
                self.progress.update(task, completed=event.current, total=total or None)
            if finished:
                total = self.progress.tasks[task].total or 1
                self.progress.update(task, completed=total, total=total)
            self.progress.update(task, description=f"{event.layer} {event.status}")
        elif finished and event.layer not in self.done:
            self.done.add(event.layer)
            self.out.print(f"  {event.layer}: {event.status}", soft_wrap=True)


def _push(tag: str | None, out: Console = console) -> tuple[Any, str, str]:
    """Tag and push; returns (push result, target image, job tag). Progress goes to ``out``."""
    from contestkit import dockerengine, registry

    client = _client()
    credentials = _fresh_credentials(client)
    docker = dockerengine.client()
    source, target, job_tag = _resolve_image(tag, credentials, docker)
    if source != target:
        registry.tag(source, target, client=docker)
    with _PushDisplay(target, out) as display:
        result = registry.push(target, credentials, on_event=display, client=docker)
    digest = f" ({result.digest})" if result.digest else ""
    out.print(f"[green]Pushed[/] {target}{digest}", soft_wrap=True)
    return result, target, job_tag


def push(tag: str = typer.Argument(None, help="TAG of the project's image, or NAME:TAG of a local image.")) -> None:
    """Tag the agent image for the team registry and push it (a progress bar per layer)."""
    _push(tag)


def submit(
    tag: str = typer.Argument(None, help="TAG of the project's image, or NAME:TAG of a local image."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job to the end and print its levels and score."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the job as one JSON document (with --wait, the finished job); the rest to stderr."
    ),
) -> None:
    """Push the agent image to the team registry and start an evaluation job for it."""
    out = err_console if json_out else console  # stdout then holds only the JSON document
    result, target, job_tag = _push(tag, out)
    client = _client()
    job = client.start_job(job_tag, result.digest)
    out.print(f"[green]Job {job['id']} queued[/] for {target}.", soft_wrap=True)
    if not wait:
        out.print(f"Follow it with `contestkit jobs {job['id']} --watch`.")
        if json_out:
            print_json(job)
        return
    final = _watch(client, int(job["id"]), json_out=json_out)
    if final.get("status") != "finished":
        reason = f": {final['error']}" if final.get("error") else ""
        raise ContestkitError(f"Job {final['id']} {final.get('status')}{reason}.")


# -- jobs ----------------------------------------------------------------------------------------


class _JobsGroup(TyperGroup):
    """``jobs [ID]`` and ``jobs cancel [ID]`` share their first word: anything that is not a
    subcommand name goes to the hidden-in-plain-sight ``show`` subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first is None or (first not in ctx.help_option_names and self.get_command(ctx, first) is None):
            args = ["show", *args]
        return super().parse_args(ctx, args)


jobs_app = typer.Typer(
    name="jobs",
    cls=_JobsGroup,
    help="Your team's evaluation jobs: `jobs [ID] [--all] [--watch] [--json]`, `jobs cancel`, `jobs restart`.",
)


def job_table(job: dict[str, Any]) -> Table:
    """The per-level table of one job (the Error column only when a level has one)."""
    title = f"Job {job.get('id')}: {_t(job.get('status'))}"
    if job.get("score") is not None:
        title += f", score {_score(job.get('score'))}"
    workers = job.get("workers") or []
    errors = any(worker.get("error") for worker in workers)
    table = Table(title=title)
    table.add_column("Level", overflow="fold")
    for name in ("State", "Progress", "ETA", "Episodes", "Score"):
        table.add_column(name, no_wrap=True)
    if errors:
        table.add_column("Error", overflow="fold")
    for worker in workers:
        progress = worker.get("progress")
        row = [
            _t(worker.get("task", "?")),
            _t(worker.get("state", "?")),
            f"{progress * 100:.0f}%" if isinstance(progress, (int, float)) else "-",
            _duration(worker.get("eta")),
            str(worker.get("episodes", "-")),
            _score(worker.get("score")),
        ]
        if errors:
            row.append(_t(worker.get("error") or ""))
        table.add_row(*row)
    return table


def _print_job(job: dict[str, Any]) -> None:
    console.print(job_table(job))
    if job.get("image"):
        digest = f"@{job['digest']}" if job.get("digest") else ""
        console.print(f"image: {_t(job['image'])}{digest}", soft_wrap=True)
    if job.get("error"):
        console.print(f"note: {_t(job['error'])}", soft_wrap=True)


def _watch(client: ContestClient, job_id: int | None, *, json_out: bool = False) -> dict[str, Any]:
    """Follow a job until it ends; Ctrl-C stops watching, not the job."""
    from rich.live import Live

    interval = _poll_seconds()
    job = client.job(job_id)
    try:
        if console.is_terminal and not json_out:
            with Live(job_table(job), console=console, refresh_per_second=4) as live:
                while job.get("status") not in TERMINAL_STATES:
                    time.sleep(interval)
                    job = client.job(int(job["id"]))
                    live.update(job_table(job))
        else:
            last = None
            while True:
                # Not a terminal (CI logs, pipes): one line whenever the status, the number of levels
                # done or the overall progress (in 10% steps) changes, not one per poll.
                workers = job.get("workers", [])
                done = sum(1 for w in workers if w.get("state") in TERMINAL_STATES)
                fractions = [1.0 if w.get("state") in TERMINAL_STATES else (w.get("progress") or 0.0) for w in workers]
                percent = int(100 * sum(fractions) / len(fractions)) if fractions else 0
                line = (job.get("status"), done, percent // 10)
                if line != last and not json_out:
                    err_console.print(
                        f"job {job['id']}: {job.get('status')}, {done}/{len(workers)} levels done, {percent}%"
                    )
                    last = line
                if job.get("status") in TERMINAL_STATES:
                    break
                time.sleep(interval)
                job = client.job(int(job["id"]))
    except KeyboardInterrupt:
        err_console.print(f"Stopped watching; job {job.get('id')} goes on (`contestkit jobs {job.get('id')} --watch`).")
        raise typer.Exit(130) from None
    if json_out:
        print_json(job)
    else:
        _print_job(job)
    return job


@jobs_app.command("show")
def jobs_show(
    job_id: int = typer.Argument(None, metavar="[ID]", help="A job id (default: your latest job)."),
    all_jobs: bool = typer.Option(False, "--all", "-a", help="List all your jobs."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the job until it ends."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show your latest job (or job ID) with its levels; --all lists every job."""
    client = _client()
    if all_jobs:
        if watch or job_id is not None:
            raise UsageError("--all lists jobs; use `contestkit jobs ID --watch` to follow one.")
        listing = client.jobs()
        if json_out:
            print_json(listing)
            return
        if not listing:
            console.print("No jobs yet; `contestkit submit TAG` starts one.")
            return
        table = Table("ID", "Status", "Score", "Tag", "Created", "Finished", title="Your jobs")
        for job in listing:
            table.add_row(
                str(job.get("id")),
                _t(job.get("status")),
                _score(job.get("score")),
                _t(job.get("tag", "-")),
                _when(job.get("created")),
                _when(job.get("finished")),
            )
        console.print(table)
        return
    if watch:
        _watch(client, job_id, json_out=json_out)
        return
    job = client.job(job_id)
    if json_out:
        print_json(job)
    else:
        _print_job(job)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Pass --yes to confirm (there is no terminal to ask on).")
    if not typer.confirm(question, default=False):
        console.print("Nothing changed.")
        raise typer.Exit(0)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: int = typer.Argument(None, metavar="[ID]", help="The job to cancel (default: your running job)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Cancel your queued or running job."""
    what = f"job {job_id}" if job_id is not None else "your running job"
    _confirm(f"Cancel {what}?", yes)
    job = _client().kill(job_id)
    if json_out:
        print_json(job)
        return
    state = "cancelled" if job.get("status") == "cancelled" else "is being cancelled"
    console.print(f"Job {job.get('id')} {state}.")


@jobs_app.command("restart")
def jobs_restart(
    job_id: int = typer.Argument(None, metavar="[ID]", help="The job to run again (default: your latest job)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Run a finished, failed or cancelled job again (same image, a new attempt)."""
    what = f"job {job_id}" if job_id is not None else "your latest job"
    _confirm(f"Restart {what}? Its score is replaced by the new attempt's.", yes)
    job = _client().restart(job_id)
    if json_out:
        print_json(job)
        return
    console.print(f"Job {job.get('id')} queued again (attempt {job.get('attempt', '?')}).")
    console.print(f"Follow it with `contestkit jobs {job.get('id')} --watch`.")


# -- leaderboard ---------------------------------------------------------------------------------


def leaderboard(
    server: str = typer.Option(None, "--server", help="Contest server URL (default: the one you logged in to)."),
    level: str = typer.Option(None, "--level", help="One level's view: GAME/STATE of the leaderboard's level set."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The contest's leaderboard: each team's latest (or best) finished job, best first."""
    url = known_server(server)
    if url is None:
        raise UsageError("Which contest server? Pass --server URL or log in first (`contestkit login`).")
    stored = load_login()
    client = ContestClient(url) if stored is None or stored.server != url else ContestClient.from_login(stored)
    board = client.leaderboard(level)
    if json_out:
        print_json(board)
        return
    rows = board.get("leaderboard") or []
    if not rows:
        console.print("The leaderboard is empty: no job has finished yet.")
        return
    table = Table("#", "Team", "Score", "Job finished", title=f"Leaderboard of {url}")
    for place, row in enumerate(rows, start=int(board.get("start") or 1)):
        name = _t(row.get("name")) + (" (baseline)" if row.get("baseline") else "")
        table.add_row(str(place), name, _score(row.get("score")), _when(row.get("finished")))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Called by ``contestkit.cli`` to add the contest commands."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.add_typer(registry_app, name="registry")
    app.command("push")(push)
    app.command("submit")(submit)
    app.add_typer(jobs_app, name="jobs")
    app.command("leaderboard")(leaderboard)
