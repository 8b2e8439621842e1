"""Talking to a contest: login, logout, registry, push, submit, jobs, leaderboard.

The commands parse, call ``contestkit.client.api_client`` / ``contestkit.client.registry`` and print. Every data
command takes ``--json`` and then prints one JSON document on stdout (the product contract).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn
from rich.table import Table
from typer.core import TyperGroup

from contestkit.cli.output import console, err_console, print_json, shown, visible
from contestkit.client.api_client import ApiError, ContestClient
from contestkit.client.credentials import (
    RegistryCredentials,
    ServerLogin,
    clear_login,
    clear_registry_credentials,
    known_server,
    load_device_cookie,
    load_login,
    load_registry_credentials,
    load_stored_login,
    save_device_cookie,
    save_login,
    save_registry_credentials,
)
from contestkit.env.scoring import plural
from contestkit.errors import ContestkitError, NotFoundError, UsageError
from contestkit.runs import results
from contestkit.states import ACTIVE_JOB_STATES, TERMINAL_JOB_STATES, TERMINAL_LEVEL_STATES, JobState, LevelState

# The job states the CLI reads back from the server's answers (their home: contestkit.states). A stalled
# job is shown to the team and still active: a new submission would be refused.
ACTIVE_STATES = (*ACTIVE_JOB_STATES, JobState.STALLED)
NO_JOBS_YET = "No jobs yet; `contestkit submit TAG` starts one."


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
    """Text from the server or the user, shown literally (a "[x]" in a team name is not markup) and
    with control and bidi characters made visible (``output.shown``)."""
    return shown(value)


def _when(stamp: float | None) -> str:
    """A server time as the contest's pages and phase lines show it: in UTC, and saying so (a table in
    local time beside a phase line in UTC would put the freeze an hour or more off)."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC") if stamp else "-"


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
    answer = client.login(email.strip(), password, device_cookie=load_device_cookie(client.server, email))
    device = client.device_cookie()
    if device:
        save_device_cookie(client.server, email, device)
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
        from contestkit.client.registry import docker_cli_logout

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
    from contestkit.client import registry

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
    from contestkit.projects.project import find_project

    return find_project()


def _resolve_image(tag: str | None, credentials: RegistryCredentials, client: Any) -> tuple[str, str, str]:
    """(local source image, team-registry target, job tag ``NAME:TAG``) for ``push``/``submit [TAG]``.

    ``TAG`` alone means the project's image (``contestkit build TAG`` made it; ``agent`` outside a
    project); ``NAME:TAG`` or a full reference names a local image directly, as the 2018 client did.
    """
    from contestkit.containers import imageref
    from contestkit.containers.images import image_present

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
    from contestkit.client import registry
    from contestkit.containers import dockerengine

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
    client = _client()
    # Before pushing: a push of minutes that ends in "submissions closed" or "already has a job
    # running" helps nobody. The server answers with the sentence it would give after the push.
    try:
        checked = client.check_start()
    except ApiError as refused:
        raise ContestkitError(f"Nothing was pushed: {refused}") from None
    active = None if checked else client.latest_job()  # a server without the check: ask for the running job
    if active is not None and active.get("status") in ACTIVE_STATES:
        raise ContestkitError(
            f"Your team already has job {active.get('id')} {active.get('status')}; one job runs at a time, so "
            f"nothing was pushed. Wait for it (`contestkit jobs {active.get('id')} --watch`) or cancel it "
            f"(`contestkit jobs cancel {active.get('id')}`), then submit again."
        )
    result, target, job_tag = _push(tag, out)
    job = client.start_job(job_tag, result.digest)
    out.print(f"[green]Job {job['id']} queued[/] for {target}.", soft_wrap=True)
    if not wait:
        out.print(f"Follow it with `contestkit jobs {job['id']} --watch`.")
        if json_out:
            print_json(job)
        return
    final = _watch(client, int(job["id"]), json_out=json_out)
    failure = job_failure(final)
    if failure is None and final.get("status") != JobState.FINISHED:
        reason = f": {final['error']}" if final.get("error") else ""
        failure = f"Job {final['id']} {final.get('status')}{reason}."
    if failure:
        raise ContestkitError(failure)


def job_failure(job: dict[str, Any]) -> str | None:
    """The sentence for a job that failed or has a failed level (``submit --wait`` and ``jobs`` then
    exit non-zero); None for a job that is fine so far, or was cancelled by the team."""
    failed = [w for w in job.get("workers") or [] if w.get("state") == LevelState.FAILED]
    if job.get("status") != JobState.FAILED and not failed:
        return None
    if job.get("error"):
        why = str(job["error"])
    elif failed:
        why = f"level {failed[0].get('task', '?')} failed: {failed[0].get('error') or 'no reason given'}"
    else:
        why = "no reason given"
    why = why if why.endswith((".", "!", "?")) else why + "."
    return f"Job {job.get('id')} failed: {why} `contestkit jobs logs {job.get('id')}` shows the levels' logs."


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
    help=(
        "Your team's evaluation jobs: `jobs [ID] [--all] [--watch] [--json]`, `jobs cancel`, `jobs restart`, "
        "`jobs logs ID [LEVEL]`, `jobs download ID`."
    ),
)


def job_table(job: dict[str, Any]) -> Table:
    """The per-level table of one job (the Error column only when a level has one)."""
    title = f"Job {job.get('id')}: {_t(job.get('status'))}"
    if job.get("score") is not None:
        title += f", score {_score(job.get('score'))}"
    workers = job.get("workers") or []
    errors = any(worker.get("error") for worker in workers)
    running_means = False
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
            _level_score(worker),
        ]
        running_means = running_means or ("score" not in worker and "mean_episode_reward" in worker)
        if errors:
            row.append(_t(worker.get("error") or ""))
        table.add_row(*row)
    if running_means:
        table.caption = "~ running mean of the episodes so far"
    return table


def _level_score(worker: dict[str, Any]) -> str:
    """The level's score, or while it runs the mean reward of its episodes so far (marked ``~``)."""
    if worker.get("score") is not None:
        return _score(worker["score"])
    mean = worker.get("mean_episode_reward")
    return f"~{_score(mean)}" if isinstance(mean, (int, float)) else "-"


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
                while job.get("status") not in TERMINAL_JOB_STATES:
                    time.sleep(interval)
                    job = client.job(int(job["id"]))
                    live.update(job_table(job))
        else:
            # Not a terminal (CI logs, pipes): one line per change, not one per poll: the job's
            # status, and each level's state, progress (in 10% steps) and finished episodes.
            seen: dict[str, str] = {}
            while True:
                if not json_out:
                    for key, line in watch_lines(job):
                        if seen.get(key) != line:
                            err_console.print(visible(line), soft_wrap=True, markup=False)
                            seen[key] = line
                if job.get("status") in TERMINAL_JOB_STATES:
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


def watch_lines(job: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, line) for a job and each of its levels; ``--watch`` prints a line when its text changes."""
    workers = job.get("workers") or []
    done = sum(1 for w in workers if w.get("state") in TERMINAL_LEVEL_STATES)
    head = f"job {job.get('id')}: {job.get('status')}, {done}/{len(workers)} levels done"
    if job.get("score") is not None:
        head += f", score {_score(job['score'])}"
    lines = [("job", head)]
    for worker in workers:
        state = worker.get("state", "?")
        parts = [f"job {job.get('id')} level {worker.get('task', '?')}: {state}"]
        progress = worker.get("progress")
        if state == LevelState.RUNNING and isinstance(progress, (int, float)):
            parts.append(f"{int(progress * 10) * 10}%")
        if worker.get("episodes") is not None and state != LevelState.PENDING:
            parts.append(f"{worker['episodes']} episodes")
        if worker.get("score") is not None:
            parts.append(f"score {_score(worker['score'])}")
        elif isinstance(worker.get("mean_episode_reward"), (int, float)):
            parts.append(f"mean so far {_score(worker['mean_episode_reward'])}")
        if worker.get("error") and state in TERMINAL_LEVEL_STATES:
            parts.append(f"error: {worker['error']}")
        lines.append((f"level {worker.get('task')}", ", ".join(parts)))
    return lines


@jobs_app.command("show")
def jobs_show(
    job_id: int = typer.Argument(None, metavar="ID", help="A job id (default: your latest job)."),
    all_jobs: bool = typer.Option(False, "--all", "-a", help="List all your jobs."),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="With --all: only the newest N jobs."),
    before: int = typer.Option(None, "--before", min=1, help="With --all: only jobs older than job ID (next page)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow the job until it ends."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show your latest job (or job ID) with its levels; --all lists every job.

    Exits 1 when the job failed or one of its levels did (with --watch: once it ended).
    """
    if (limit is not None or before is not None) and not all_jobs:
        raise UsageError("--limit and --before page through `contestkit jobs --all`; add --all.")
    client = _client()
    if all_jobs:
        if watch or job_id is not None:
            raise UsageError("--all lists jobs; use `contestkit jobs ID --watch` to follow one.")
        listing = client.jobs(limit=limit, before=before)
        if json_out:
            print_json(listing)
            return
        if not listing:
            console.print(NO_JOBS_YET)
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
        if limit is not None and len(listing) == limit:
            console.print(f"Older jobs: `contestkit jobs --all --limit {limit} --before {listing[-1].get('id')}`.")
        return
    if job_id is None and client.latest_job() is None:
        # The same answer as `jobs --all`: having submitted nothing yet is not an error.
        if json_out:
            print_json(None)
        else:
            console.print(NO_JOBS_YET)
        return
    if watch:
        job = _watch(client, job_id, json_out=json_out)
    else:
        job = client.job(job_id)
        if json_out:
            print_json(job)
        else:
            _print_job(job)
    failure = job_failure(job)
    if failure:
        raise ContestkitError(failure)


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
    job_id: int = typer.Argument(None, metavar="ID", help="The job to cancel (default: your running job)."),
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
    state = JobState.CANCELLED.value if job.get("status") == JobState.CANCELLED else "is being cancelled"
    console.print(f"Job {job.get('id')} {state}.")


@jobs_app.command("restart")
def jobs_restart(
    job_id: int = typer.Argument(None, metavar="ID", help="The job to run again (default: your latest job)."),
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


# -- a job's results -------------------------------------------------------------------------------


def _log_files() -> tuple[str, ...]:
    from contestkit.runs import results

    return (results.AGENT_STDOUT, results.AGENT_STDERR, results.REMOTE_STDOUT, results.REMOTE_STDERR)


def _chosen_levels(listing: dict[str, Any], wanted: str | None) -> list[dict[str, Any]]:
    """The levels ``wanted`` names (its task GAME/STATE, its state, its directory or its number), or all."""
    levels = list(listing.get("levels") or [])
    if wanted is None:
        return levels
    key = wanted.strip()
    for test in (
        lambda lv: lv.get("task") == key or lv.get("dir") == key,
        lambda lv: str(lv.get("task", "")).split("/", 1)[-1] == key,
        lambda lv: key.isdigit() and int(key) == lv.get("index"),
    ):
        found = [lv for lv in levels if test(lv)]
        if found:
            return found
    names = ", ".join(str(lv.get("task")) for lv in levels) or "none"
    raise UsageError(f"Job {listing.get('job')} has no level '{wanted}'; its levels are: {names}.")


def _safe_relative(path: str) -> PurePosixPath:
    """A path the server listed, checked before it is written under --dir (no '..', not absolute)."""
    relative = PurePosixPath(path)
    if relative.is_absolute() or not relative.parts or any(p in ("", ".", "..") for p in relative.parts):
        raise ContestkitError(f"The server listed the result file '{path}', which is not a relative path; not saved.")
    return relative


@jobs_app.command("logs")
def jobs_logs(
    job_id: int = typer.Argument(..., metavar="ID", help="The job."),
    level: str = typer.Argument(None, metavar="[LEVEL]", help="GAME/STATE, STATE or its number (default: all)."),
    attempt: int = typer.Option(None, "--attempt", min=1, help="An earlier attempt (default: the latest)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Print the agent's and the env's logs of a job's levels (from the server)."""
    client = _client()
    listing = client.results(job_id, attempt)
    present = {f["path"] for f in listing.get("files") or []}
    logs: list[dict[str, Any]] = []
    for chosen in _chosen_levels(listing, level):
        for name in _log_files():
            path = f"{chosen['dir']}/{name}"
            if path not in present:
                continue
            with client.result_file(job_id, path, attempt) as response:
                text = response.content.decode("utf-8", "replace")
            logs.append({"level": chosen.get("task"), "file": path, "text": text})
    if json_out:
        print_json({"job": job_id, "attempt": listing.get("attempt"), "logs": logs})
        return
    if not logs:
        err_console.print(f"Job {job_id} has no logs yet (attempt {listing.get('attempt')}).")
        return
    for entry in logs:
        console.print(f"==> {visible(entry['file'])} <==", style="bold", soft_wrap=True, markup=False)
        sys.stdout.flush()
        text = visible(entry["text"])  # an agent's output: no escape sequence reaches the terminal
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()


@jobs_app.command("download")
def jobs_download(
    job_id: int = typer.Argument(..., metavar="ID", help="The job."),
    directory: Path = typer.Option(None, "--dir", help="Where to save them (default: ./job-ID)."),
    attempt: int = typer.Option(None, "--attempt", min=1, help="An earlier attempt (default: the latest)."),
    with_out: bool = typer.Option(
        False, "--with-out", help="Also the agent's out/ of each level (checkpoints: it can be large)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Download a job's results: each level's monitor.csv, logs, summary.json and reward curve (--with-out: and
    the agent's out/)."""
    client = _client()
    listing = client.results(job_id, attempt)
    target = (directory or Path(f"job-{job_id}")).expanduser()
    saved: list[dict[str, Any]] = []
    total = 0
    files = listing.get("files") or []
    skipped = [entry for entry in files if not with_out and results.AGENT_OUT in _safe_relative(entry["path"]).parts]
    for entry in files:
        if entry in skipped:
            continue
        destination = target.joinpath(*_safe_relative(entry["path"]).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        with client.result_file(job_id, entry["path"], attempt) as response, partial.open("wb") as fh:
            for chunk in response.iter_content(1 << 16):
                fh.write(chunk)
        partial.replace(destination)
        size = destination.stat().st_size
        total += size
        saved.append({"path": entry["path"], "size": size})
    document = {"job": job_id, "attempt": listing.get("attempt"), "dir": str(target), "files": saved}
    if skipped:
        document["skipped_out"] = len(skipped)
    if listing.get("truncated"):
        document["truncated"] = True
    if json_out:
        print_json(document)
        return
    if not saved and not skipped:
        console.print(f"Job {job_id} has no result files yet (attempt {listing.get('attempt')}).")
        return
    console.print(
        f"Saved {plural(len(saved), 'file')} ({total / 1e6:.1f} MB) of job {job_id}, attempt {listing.get('attempt')}, "
        f"in {_t(target)}.",
        soft_wrap=True,
    )
    if listing.get("truncated"):
        err_console.print("[yellow]warning:[/] the server listed only the first files; the rest were not saved.")
    if skipped:
        console.print(f"Left out {plural(len(skipped), 'file')} of the agent's out/; --with-out downloads them too.")


# -- API tokens ------------------------------------------------------------------------------------

tokens_app = typer.Typer(
    name="tokens", help="API tokens for scripts (Authorization: Bearer, or CONTESTKIT_TOKEN).", no_args_is_help=True
)


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Option(None, "--name", help="What the token is for (shown by `tokens list`)."),
    expires_in_days: float = typer.Option(
        None, "--expires-in-days", min=0.001, help="Days it is valid (default and maximum: the server's)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Create an API token for your team; its secret is shown this once."""
    created = _client().create_token(name, expires_in_days)
    if json_out:
        print_json(created)
        return
    until = f", valid until {_when(created.get('expires'))}" if created.get("expires") else ", no expiry"
    console.print(f"API token {created.get('id')} created{until}. Its secret (shown only now):", soft_wrap=True)
    console.print(str(created.get("token")), markup=False, soft_wrap=True)
    console.print("Use it as CONTESTKIT_TOKEN=... with CONTESTKIT_SERVER, or as Authorization: Bearer ....")


@tokens_app.command("list")
def tokens_list(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List your team's API tokens (never their secrets)."""
    tokens = _client().tokens()
    if json_out:
        print_json(tokens)
        return
    if not tokens:
        console.print("No API tokens; `contestkit tokens create --name NAME` makes one.")
        return
    table = Table("ID", "Name", "Created", "Expires", "Last used", title="Your API tokens")
    for token in tokens:
        table.add_row(
            str(token.get("id")),
            _t(token.get("name") or "-"),
            _when(token.get("created")),
            _when(token.get("expires")) if token.get("expires") else "never",
            _when(token.get("last_used")),
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: int = typer.Argument(..., metavar="ID", help="The token's id (`contestkit tokens list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Revoke one of your team's API tokens; scripts using it are refused from then on."""
    _client().revoke_token(token_id)
    if json_out:
        print_json({"id": token_id, "revoked": True})
        return
    console.print(f"API token {token_id} revoked.")


# -- leaderboard ---------------------------------------------------------------------------------


def leaderboard(
    server: str = typer.Option(None, "--server", help="Contest server URL (default: the one you logged in to)."),
    level: str = typer.Option(None, "--level", help="One level's view: GAME/STATE of the leaderboard's level set."),
    final_board: bool = typer.Option(False, "--final", help="The final's results (once the host published them)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """The contest's leaderboard (each team's latest or best finished job, best first), or --final's results."""
    url = known_server(server)
    if url is None:
        raise UsageError("Which contest server? Pass --server URL or log in first (`contestkit login`).")
    if final_board and level:
        raise UsageError("--final shows the whole final ranking with every level; leave out --level.")
    stored = load_login()
    client = ContestClient(url) if stored is None or stored.server != url else ContestClient.from_login(stored)
    if final_board:
        _final_leaderboard(client, url, json_out)
        return
    board = client.leaderboard(level)
    if json_out:
        print_json(board)
        return
    contest = client.contest()
    if contest is not None:
        console.print(f"{_t(contest.get('name'))}: {_t(contest['phase']['line'])}", soft_wrap=True)
    rows = board.get("leaderboard") or []
    frozen = board.get("frozen")
    if not rows:
        if frozen:
            console.print(f"The leaderboard is empty: no job had finished when it froze at {_when(frozen)}.")
        else:
            console.print("The leaderboard is empty: no job has finished yet.")
        return
    title = f"Leaderboard of {url}" + (f", frozen since {_when(frozen)}" if frozen else "")
    table = Table("#", "Team", "Score", "Job finished", title=title)
    for place, row in enumerate(rows, start=int(board.get("start") or 1)):
        name = _t(row.get("name")) + (" (baseline)" if row.get("baseline") else "")
        table.add_row(str(place), name, _score(row.get("score")), _when(row.get("finished")))
    console.print(table)


def _final_leaderboard(client: ContestClient, url: str, json_out: bool) -> None:
    """``leaderboard --final``: the published final ranking; before publishing, only that it is not."""
    try:
        board = client.final_leaderboard()
    except NotFoundError:
        if json_out:
            print_json({"published": None, "leaderboard": []})
        else:
            console.print("The final results are not published yet.")
        return
    if json_out:
        print_json(board)
        return
    levels = board.get("levels") or []
    table = Table("#", "Team", "Score", *[f"L{i}" for i in range(1, len(levels) + 1)], title=f"Final results of {url}")
    for row in board.get("leaderboard") or []:
        name = _t(row.get("name")) + (" (baseline)" if row.get("baseline") else "")
        scores = [_score((row.get("levels") or {}).get(task)) for task in levels]
        table.add_row(str(row.get("rank")), name, _score(row.get("score")), *scores)
    console.print(f"Final results published {_when(board.get('published'))}.")
    console.print(table)
    for number, task in enumerate(levels, start=1):
        console.print(f"  L{number}: {_t(task)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Called by ``contestkit.cli`` to add the contest commands."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.add_typer(registry_app, name="registry")
    app.command("push")(push)
    app.command("submit")(submit)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(tokens_app, name="tokens")
    app.command("leaderboard")(leaderboard)
