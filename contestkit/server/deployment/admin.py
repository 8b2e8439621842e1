"""What the organiser does from the shell: create a contest data directory (teams: ``teams``).

Each team gets a namespace in the one registry (``HOST:PORT/<namespace>/...``) and a registry account
named after it. The registry uses token auth: the contest server is its token issuer and grants a
team ``pull,push`` under its own namespace only (``registry_auth``), so teams cannot read, overwrite
or delete each other's images. Registry passwords are derived, not stored (``registry_auth``).
"""

from __future__ import annotations

import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from contestkit.containers import imageref
from contestkit.env.levellist import read_level_set
from contestkit.errors import UsageError
from contestkit.server.config import (
    CONFIG_NAME,
    LEVELS_NAME,
    ServerConfig,
    load_config,
    validate,
)
from contestkit.server.security import registry_auth
from contestkit.server.storage.db import Database
from contestkit.server.storage.migrations import migrate

log = logging.getLogger("contestkit.server.deployment.admin")


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
    levels = read_level_set(Path(levels_file))
    warnings = _check_levels(levels) if evaluator is None else []
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both (or neither).")
    if registry_scheme is None:
        host, _ = imageref.split_host_port(registry)
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
        from contestkit.env import games
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
