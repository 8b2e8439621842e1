"""``contestkit server init | add-team | run | manifests``: host your own contest.

The commands only parse, call ``contestkit.server`` and print; the server package is imported
lazily so that contestants who never host a contest do not need its dependencies installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from contestkit.cli.output import console, err_console
from contestkit.errors import ContestkitError, UsageError
from contestkit.runs import levelrun
from contestkit.server.config import DEFAULT_PORT

server_app = typer.Typer(
    name="server",
    help="Host your own contest: a contest API, a job queue that evaluates pushed images, a leaderboard.",
    no_args_is_help=True,
)

DEFAULT_DATA_DIR = Path("contest")  # the docs' name for it too (docs/host-contest-site.md)
_DATA_DIR = typer.Option(
    DEFAULT_DATA_DIR, "--data-dir", "-d", help="The contest's data directory (config, database, results)."
)


def _needs_server_extra() -> None:
    """Say which package to install instead of failing on an import deep inside the server."""
    from importlib.util import find_spec

    for module in ("fastapi", "uvicorn", "sqlalchemy", "argon2", "jwt", "cryptography", "jinja2", "prometheus_client"):
        if find_spec(module) is None:
            raise ContestkitError(
                f"Hosting a contest needs the server extra ({module} is missing): pip install 'contestkit[server]'."
            )


@server_app.command("init")
def init(
    data_dir: Path = _DATA_DIR,
    registry: str = typer.Option(..., "--registry", help="HOST:PORT of the team registry, e.g. 127.0.0.1:5000."),
    levels: Path = typer.Option(..., "--levels", help="CSV of the level set, header game,state."),
    timestep_limit: int = typer.Option(levelrun.TIMESTEP_LIMIT, "--timestep-limit", help="Timesteps per level."),
    wallclock_limit: float = typer.Option(
        levelrun.WALLCLOCK_LIMIT, "--wallclock-limit", help="Wall-clock seconds per level."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://u:p@host/db (default: SQLite)."
    ),
    registry_scheme: str = typer.Option(
        None, "--registry-scheme", help="http or https (default: http on localhost, else https)."
    ),
    evaluator: str = typer.Option(
        None, "--evaluator", help="MODULE:FUNCTION evaluating one level (default: contestkit's Docker evaluation)."
    ),
    pull: bool = typer.Option(True, "--pull/--no-pull", help="Pull each job's image from the registry first."),
    parallel_levels: int = typer.Option(1, "--parallel-levels", help="Levels of one job evaluated at once."),
    server_url: str = typer.Option(
        None,
        "--server-url",
        help="The contest server as teams reach it, e.g. https://contest.example.org:8000: the registry sends "
        f"their Docker engines there for tokens (default: the registry's host, port {DEFAULT_PORT}).",
    ),
    tls_cert: Path = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain) for the API and the registry: both then speak HTTPS."
    ),
    tls_key: Path = typer.Option(None, "--tls-key", help="The PEM private key of --tls-cert."),
    force: bool = typer.Option(False, "--force", help="Rewrite an existing configuration (teams and jobs are kept)."),
) -> None:
    """Create a contest data directory: configuration, level set, registry config and database."""
    _needs_server_extra()
    from contestkit.server.deployment.admin import init_contest

    result = init_contest(
        data_dir,
        registry=registry,
        levels_file=levels,
        timestep_limit=timestep_limit,
        wallclock_limit=wallclock_limit,
        database_url=database_url,
        registry_scheme=registry_scheme,
        evaluator=evaluator,
        pull_images=pull,
        parallel_levels=parallel_levels,
        server_url=server_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        force=force,
    )
    config = result.config
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")
    for note in result.notes:
        err_console.print(f"note: {note}", soft_wrap=True)
    count = len(config.levels())

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)  # no wrapping: the paths must stay copyable

    say(f"[green]Contest created[/] in {config.data_dir} ({count} level{'s' if count != 1 else ''}).")
    say("Next steps:")
    say(f"  1. add teams:              contestkit server add-team NAME --email EMAIL --data-dir {config.data_dir}")
    say(f"  2. start the server:       contestkit server run --data-dir {config.data_dir}")
    say(f"     (it runs the team registry too: docker-registry serve {result.registry_config}; --no-registry if")
    say("     you run the registry yourself)")
    say(f"The registry asks {config.realm_url()} for tokens: the server must be reachable there.")


@server_app.command("add-team")
def add_team(
    name: str = typer.Argument(..., help="The team's name as the leaderboard shows it."),
    email: str = typer.Option(..., "--email", help="The email the team logs in with."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the team's password from stdin."),
    namespace: str = typer.Option(
        None, "--namespace", help="The team's registry namespace (default: derived from NAME)."
    ),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Add a team: its login and its own account and namespace in the registry."""
    _needs_server_extra()
    from contestkit.server.contest.teams import add_team as do_add

    password = _read_password(password_stdin)
    team = do_add(data_dir, name=name, email=email, password=password, namespace=namespace)
    console.print(f"[green]Team '{team.name}' added[/] (login {team.email}).", soft_wrap=True)
    console.print(
        f"  registry: {team.registry_url} (user {team.registry_username}); the team gets its registry password "
        "with `contestkit registry login` after `contestkit login`.",
        soft_wrap=True,
    )


@server_app.command("set-password")
def set_password(
    email: str = typer.Argument(..., help="The team's login email."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Reset a team's password (its sessions end, its API tokens are revoked, its registry password rotates)."""
    _needs_server_extra()
    from contestkit.server.contest.teams import set_password as do_set

    do_set(data_dir, email=email, password=_read_password(password_stdin))
    console.print(
        f"[green]Password of {email} changed[/]; its sessions were ended, its API tokens revoked and its registry "
        "password rotated.",
        soft_wrap=True,
    )


@server_app.command("rotate-registry-password")
def rotate_registry_password(
    email: str = typer.Argument(..., help="The team's login email."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Give a team a new registry password (after a leak); the old one gets no new registry token."""
    _needs_server_extra()
    from contestkit.server.contest.teams import rotate_registry_password as do_rotate

    do_rotate(data_dir, email=email)
    console.print(
        f"[green]Registry password of {email} rotated[/]; the team runs `contestkit registry login` to get the new "
        "one (tokens already issued end within registry_token_ttl seconds).",
        soft_wrap=True,
    )


@server_app.command("run")
def run(
    data_dir: Path = _DATA_DIR,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    registry: bool = typer.Option(
        True,
        "--registry/--no-registry",
        help="Run the team registry (docker-registry with DATA_DIR/registry/config.yml), restart it when it exits, "
        "stop it on exit. --no-registry: you run your own (systemd, compose, another host).",
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        help="API worker processes (default: one per CPU this process may use); the job queue runs once.",
        show_default=False,
    ),
) -> None:
    """Serve the contest API, run the job queue and the team registry until Ctrl-C (running jobs resume at the
    next start)."""
    _needs_server_extra()
    from contestkit.server.serving import check_workers, default_workers, serve

    count = default_workers() if workers is None else check_workers(workers)
    serve(data_dir, host=host, port=port, log_level=log_level, run_registry=registry, workers=count)


@server_app.command("manifests")
def manifests(
    registry: str = typer.Option(..., "--registry", help="HOST:PORT of the contest registry the cluster pulls from."),
    levels: Path = typer.Option(..., "--levels", help="CSV of the level set, header game,state."),
    namespace: str = typer.Option("contestkit", "--namespace", help="The contest's namespace."),
    server_image: str = typer.Option(None, "--server-image", help="An image with contestkit[server] installed."),
    remote_env_image: str = typer.Option(
        None, "--remote-env-image", help="The remote-env image with the ROMs, pushed where the cluster pulls from."
    ),
    storage_class: str = typer.Option(
        None, "--storage-class", help="StorageClass of the volumes (default: the cluster's)."
    ),
    data_size: str = typer.Option("200Gi", "--data-size", help="Size of the data directory's volume."),
    service_type: str = typer.Option("ClusterIP", "--service-type", help="ClusterIP, NodePort or LoadBalancer."),
    postgres_password_file: Path = typer.Option(
        None,
        "--postgres-password-file",
        help="File with PostgreSQL's password; made (mode 600) with a new one when missing, so every later "
        "run prints the same Secret. Without it each run makes a new password.",
    ),
    quota_cpu: str = typer.Option(None, "--quota-cpu", help="A ResourceQuota: CPU all pods may request, e.g. 600."),
    quota_memory: str = typer.Option(None, "--quota-memory", help="A ResourceQuota: memory all pods may request."),
    quota_pods: int = typer.Option(None, "--quota-pods", help="A ResourceQuota: how many pods the namespace holds."),
    priority_class: str = typer.Option(
        None, "--priority-class", help="Emit this PriorityClass and give it to every level-run pod."
    ),
    priority_value: int = typer.Option(None, "--priority-value", help="The PriorityClass's value (default 100000)."),
) -> None:
    """Print the Kubernetes objects that run this server in a cluster, for `kubectl apply -f -`."""
    from contestkit.server.deployment.manifests import (
        DeploymentOptions,
        checked,
        postgres_password,
        render_manifests,
        to_yaml,
    )

    try:
        levels_csv = levels.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"Cannot read the level list {levels}: {exc.strerror}.") from None
    extra = {"server_image": server_image, "remote_env_image": remote_env_image}
    if postgres_password_file is not None:
        extra["postgres_password"] = postgres_password(postgres_password_file)
    options = DeploymentOptions(
        registry=registry,
        levels_csv=levels_csv,
        namespace=namespace,
        storage_class=storage_class,
        data_size=data_size,
        service_type=service_type,
        quota_cpu=quota_cpu,
        quota_memory=quota_memory,
        quota_pods=quota_pods,
        priority_class=priority_class,
        **({"priority_value": priority_value} if priority_value is not None else {}),
        **{key: value for key, value in extra.items() if value},
    )
    options = checked(options)
    sys.stdout.write(to_yaml(render_manifests(options)))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin read an empty password; pipe the password in, e.g. `echo PW | ...`.")
        return password
    if not sys.stdin.isatty():
        raise UsageError("No terminal to ask for the password on; pass --password-stdin and pipe it in.")
    return typer.prompt("Team password", hide_input=True, confirmation_prompt=True)


def register(app: typer.Typer) -> None:
    """Called by ``contestkit.cli`` to add the ``server`` group."""
    app.add_typer(server_app, name="server")
