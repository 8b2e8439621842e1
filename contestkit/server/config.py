"""The server's data directory and its configuration file.

Everything a contest needs lives in one directory, so that backing it up, moving it or starting a
second contest is a matter of copying or choosing a directory:

```
DATA_DIR/
  server.yaml          this configuration (mode 0600: it holds the evaluator's and admin's registry passwords)
  levels.csv           the level set, header game,state
  contest.db           the SQLite database (unless database_url names PostgreSQL)
  registry/config.yml  a ready configuration for Debian's docker-registry (CNCF distribution), auth: token
  registry/token.key   the key that signs the registry's tokens (0600); registry/token.crt its certificate
  registry/credentials.key  the secret the teams' registry passwords are derived from (0600)
  registry/data/       the registry's storage when it runs with that configuration
  tls/                 the certificate and key given to `server init --tls-cert/--tls-key`, if any
  jobs/<id>/attempt-<n>/<nn>-<game>-<state>/   each level's results (monitor.csv, logs, summary.json)
```
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from contestkit import yamlconfig
from contestkit.containers import imageref
from contestkit.env.levellist import LevelName, read_level_set
from contestkit.errors import ContestkitError, UsageError
from contestkit.runs import cpuset, levelrun
from contestkit.server.contest import phases  # it reads this module's types only for annotations
from contestkit.states import Word

CONFIG_NAME = "server.yaml"
LEVELS_NAME = "levels.csv"
DATABASE_NAME = "contest.db"
EVALUATOR_USERNAME = "contestkit-evaluator"
ADMIN_USERNAME = "contestkit-admin"
REALM_PATH = "/rest/registry/token"
NAME_LIMIT = 200  # characters of the contest's name (a page title)
TEXT_LIMIT = 20_000  # characters of the description and of the rules text (Markdown)
#: The port the contest server listens on unless told otherwise (`server run --port`), and the one a
#: server_url-less config assumes teams reach it on. The one place it is written.
DEFAULT_PORT = 8000


class ExecutorKind(Word):
    """Where the server runs level-runs (server.yaml's ``executor``)."""

    DOCKER = "docker"  # containers on this host's Docker engine (``contestkit eval --runtime docker``)
    KUBERNETES = "kubernetes"  # one Job per level-run in a cluster (the ``kubernetes:`` settings)


#: Keys earlier versions wrote and this one does not read, and why (see :data:`RETIRED_RUNTIME`).
RETIRED: dict[str, str] = {
    "runtime": "level-runs always run in containers; `executor: docker` or `executor: kubernetes` says where",
}
#: ``runtime: docker`` is what every earlier `server init` wrote, and what the server does: a file that
#: still holds it is read as before. Any other value is refused: it never did what it said (the server
#: runs team images, which only the Docker runtime can).
RETIRED_RUNTIME = "docker"


@dataclass
class ServerConfig:
    """Everything ``server.yaml`` holds; unknown keys are refused so typos cannot go unnoticed."""

    registry: str
    timestep_limit: int = levelrun.TIMESTEP_LIMIT
    wallclock_limit: float = levelrun.WALLCLOCK_LIMIT
    registry_scheme: str = "http"
    evaluator_registry_password: str = ""
    # The registry's token auth (see registry_auth): the contest server's URL as teams' Docker engines
    # reach it (the realm is under it), the token lifetime, and the names the registry checks.
    server_url: str | None = None
    registry_token_ttl: int = 300
    registry_service: str = "contestkit-registry"
    registry_issuer: str = "contestkit"
    registry_admin_password: str = ""
    # TLS for the API and the registry (files under the data directory, from `server init --tls-*`).
    tls_cert: str | None = None
    tls_key: str | None = None
    database_url: str | None = None
    levels_file: str = LEVELS_NAME
    session_ttl_hours: float = 24 * 14
    parallel_jobs: int = 1
    parallel_levels: int = 1
    # CPU sets (e.g. ["0-5", "6-11"]): each running level takes one of its own, so that levels
    # evaluated at once never share CPUs; with sets, at most that many levels run at once.
    cpusets: list[str] = field(default_factory=list)
    record: bool = False
    # None (``seed: null``, or no key): every job attempt draws a fresh seed, recorded with the job.
    # A number is the host's explicit choice of a fixed seed for every job (level i gets seed + i).
    seed: int | None = None
    pull_images: bool = True
    evaluator: str | None = None
    # How level-runs run: "docker" (this host's engine) or "kubernetes" (one Job per level-run in a
    # cluster; its settings are the `kubernetes` mapping, see contestkit.server.executors.kubernetes).
    executor: ExecutorKind = ExecutorKind.DOCKER
    kubernetes: dict[str, Any] | None = None
    heartbeat_seconds: float = 5.0
    heartbeat_timeout: float = 60.0
    max_resumes: int = 2
    budget_grace_seconds: float = 120.0
    # Whether cookies carry ``Secure``. None (the default): they do when the server speaks TLS
    # (``tls_cert``) or its ``server_url`` is https (a TLS proxy in front); ``secure_cookies`` decides.
    cookie_secure: bool | None = None
    # What one level-run may take from the host (server/queue/run_limits.py; docs/host-limits-and-abuse.md).
    # Sizes are Docker's (56g, 512m); None: the level-run default (contestkit.runs.levelrun).
    agent_memory: str = levelrun.CONTEST_MEMORY  # capped at the host's memory, with a warning at start
    agent_pids_limit: int = levelrun.PIDS_LIMIT
    agent_out_limit: str | None = None  # default 10g; over it the level is stopped (the team's failure)
    agent_log_limit: str | None = None  # default 16m of each of stdout/stderr, head and tail kept
    # Proxies whose X-Forwarded-For/-Proto are believed (addresses or CIDRs, "*" for any). Empty (the
    # default): none, so no client can choose the address the login throttle counts it under.
    forwarded_allow_ips: list[str] = field(default_factory=list)
    # Team emails whose accounts may open the host pages (/host): teams, queue, running levels, failures.
    admins: list[str] = field(default_factory=list)
    # The contest's phases, ranking and freeze (see ``server.phases``); empty: one open leaderboard phase.
    phases: dict[str, Any] = field(default_factory=dict)
    ranking: str = "latest"
    freeze_at: str | None = None
    # Team emails whose entries are the host's baselines: shown on the leaderboards, marked as such.
    baselines: list[str] = field(default_factory=list)
    # The contest page (/): its title, a Markdown description and the rules (a link, or Markdown text).
    name: str | None = None
    description: str | None = None
    rules_url: str | None = None
    rules: str | None = None
    # Login throttling (server/security/throttle.py): failed password checks allowed per window, per account
    # (for clients without that account's device cookie) and per client address across accounts.
    login_window_seconds: float = 300.0
    login_account_limit: int = 10
    login_client_limit: int = 30
    # How long pulling a job's image is retried (with backoff) while the registry does not answer.
    pull_retry_seconds: float = 120.0
    # How often expired sessions and API tokens are deleted (server/security/housekeeping.py).
    sweep_seconds: float = 600.0
    # Worker threads for the API's blocking work (database reads and writes). None: two per CPU, at
    # least 4. Why not the framework's 40: every one contends for Python's one interpreter lock, and
    # on 2 cores 40 made ``status/<id>``'s p99 at 200 clients 771 ms, 4 made it 187 ms and 2 made it
    # 146 ms (bench/server_load.py, 2026-11-29). Why not 2: one slow write (a commit's fsync, a lock
    # wait) would then hold up every signed-in read behind it.
    request_threads: int | None = None
    data_dir: Path = field(default=Path("."), repr=False)

    # -- derived -------------------------------------------------------------------------------

    @property
    def worker_threads(self) -> int:
        """``request_threads``, or two per CPU this process may use (at least 4)."""
        if self.request_threads:
            return self.request_threads
        return max(4, 2 * len(cpuset.available()))

    def cpu_sets(self) -> list[cpuset.CpuSet]:
        """``cpusets``, parsed and checked against this machine's CPUs."""
        return [cpuset.CpuSet.parse(text, what="cpusets entry") for text in self.cpusets]

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def levels_path(self) -> Path:
        path = Path(self.levels_file)
        return path if path.is_absolute() else self.data_dir / path

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def htpasswd_path(self) -> Path:
        """Where data directories made before token auth kept their accounts (removed by the upgrade)."""
        return self.registry_dir / "htpasswd"

    @property
    def token_key_path(self) -> Path:
        return self.registry_dir / "token.key"

    @property
    def token_cert_path(self) -> Path:
        return self.registry_dir / "token.crt"

    @property
    def credentials_key_path(self) -> Path:
        return self.registry_dir / "credentials.key"

    @property
    def evaluator_username(self) -> str:
        return EVALUATOR_USERNAME

    def data_file(self, value: str | None) -> Path | None:
        """A path from server.yaml: relative ones are under the data directory."""
        if not value:
            return None
        path = Path(value)
        return path if path.is_absolute() else self.data_dir / path

    def secure_cookies(self) -> bool:
        """``cookie_secure`` when set, else whether teams reach the server over HTTPS."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.tls_cert) or (self.server_url or "").lower().startswith("https://")

    def public_url(self) -> str:
        """The contest server's URL as teams reach it: ``server_url``, else the registry's host on
        :data:`DEFAULT_PORT`."""
        if self.server_url:
            return self.server_url.rstrip("/")
        host, _ = imageref.split_host_port(self.registry)
        return f"{self.registry_scheme}://{host}:{DEFAULT_PORT}"

    def realm_url(self) -> str:
        """The token endpoint the registry sends clients to."""
        return self.public_url() + REALM_PATH

    def database(self) -> str:
        """The SQLAlchemy URL: the configured one, or the SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / DATABASE_NAME).absolute()}"

    def levels(self, levels_file: str | None = None) -> list[LevelName]:
        """The level set (or ``levels_file``, a phase's, relative to the data directory), read fresh so an
        organiser can edit it between jobs without a restart."""
        if levels_file is None:
            return read_level_set(self.levels_path)
        path = Path(levels_file)
        return read_level_set(path if path.is_absolute() else self.data_dir / path)

    def registry_host(self) -> str:
        """The ``HOST:PORT`` part of image references (no scheme)."""
        return self.registry

    def registry_api(self) -> str:
        """The registry's HTTP base URL for catalog calls."""
        return f"{self.registry_scheme}://{self.registry}"

    # -- files ---------------------------------------------------------------------------------

    def to_yaml(self) -> str:
        data = {key: value.value if isinstance(value, Enum) else value for key, value in asdict(self).items()}
        data.pop("data_dir")
        header = (
            "# contestkit server configuration (written by `contestkit server init`).\n"
            "# Edit and restart `contestkit server run`; unknown keys are refused.\n"
        )
        return header + yaml.safe_dump(data, sort_keys=False)

    def save(self) -> None:
        """Write ``server.yaml`` with mode 0600: it holds the evaluator's registry password."""
        write_private(self.config_path, self.to_yaml())


#: An example value (as YAML) of each key whose default says nothing, shown when a value has the wrong
#: type; the other keys' examples are their defaults.
EXAMPLES: dict[str, str] = {
    "registry": "127.0.0.1:5000",
    "server_url": "https://contest.example.com:8000",
    "tls_cert": "tls/cert.pem",
    "tls_key": "tls/key.pem",
    "database_url": "postgresql+psycopg://contest:secret@db.example.com/contest",
    "cpusets": '["0-5", "6-11"]',
    "seed": "2018",
    "evaluator": "mypackage.runner:run_level",
    "kubernetes": "{remote_env_image: 127.0.0.1:5000/contestkit/remote-env:1}",
    "admins": "[host@example.com]",
    "phases": "{leaderboard: {closes: 2026-06-05T00:00:00Z}}",
    "freeze_at": "2026-06-01T00:00:00Z",
    "baselines": "[baseline@example.com]",
    "request_threads": "8",
    "evaluator_registry_password": "a-long-random-password",
    "registry_admin_password": "a-long-random-password",
    "cookie_secure": "true",
    "agent_out_limit": "10g",
    "agent_log_limit": "16m",
    "forwarded_allow_ips": "[127.0.0.1]",
    "name": "Retro Contest 2026",
    "description": "Teach an agent to *play*. Markdown, rendered without raw HTML.",
    "rules_url": "https://contest.example.com/rules",
    "rules": "One submission a day; the final's levels stay hidden until it is published.",
}

#: What ``server.yaml`` may hold, and each key's type (read by :mod:`contestkit.yamlconfig`).
SETTINGS: dict[str, yamlconfig.Setting] = yamlconfig.settings_of(ServerConfig, EXAMPLES, skip=("data_dir",))


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically (a crash leaves the old file or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_config(data_dir: Path | str) -> ServerConfig:
    """Read ``DATA_DIR/server.yaml``; every problem names the file and, where it can, the line and key."""
    data_dir = Path(data_dir).expanduser().absolute()
    path = data_dir / CONFIG_NAME
    if not path.is_file():
        raise ContestkitError(
            f"{data_dir} is not a contest data directory (no {CONFIG_NAME}); "
            f"create one with `contestkit server init --data-dir {data_dir} ...`."
        )
    section = yamlconfig.load(path)
    if "registry" not in section:
        raise UsageError(
            f"{path} lacks the 'registry' key (HOST:PORT of the team registry), "
            f"e.g. `registry: {EXAMPLES['registry']}`."
        )
    if section.value("runtime") == RETIRED_RUNTIME:
        section = section.without("runtime")
    values = yamlconfig.read(section, SETTINGS, retired=RETIRED)
    config = ServerConfig(**values, data_dir=data_dir)
    validate(config, section)
    return config


def _is_host_port(registry: str) -> bool:
    """``HOST[:PORT]`` (an IPv6 host in brackets), with no scheme and no path: imageref's rules."""
    try:
        imageref.validate_registry(registry)
    except UsageError:
        return False
    return "/" not in registry


def validate(config: ServerConfig, source: yamlconfig.Section | None = None) -> None:
    """Refuse settings that would only fail later, at the first job, with a worse message.

    ``source`` is the file the config was read from, when it was: nested settings (``kubernetes``) are
    then checked with their lines.
    """
    from contestkit.server.queue.run_limits import agent_limits

    agent_limits(config.agent_memory, config.agent_pids_limit, config.agent_out_limit, config.agent_log_limit)
    if not _is_host_port(config.registry):
        raise UsageError(f"registry '{config.registry}' must be HOST:PORT (no scheme, no path), e.g. 127.0.0.1:5000.")
    if config.registry_scheme not in ("http", "https"):
        raise UsageError(f"registry_scheme must be http or https, not '{config.registry_scheme}'.")
    if config.timestep_limit <= 0:
        raise UsageError("timestep_limit must be a positive number of timesteps per level.")
    if config.wallclock_limit <= 0:
        raise UsageError("wallclock_limit must be a positive number of seconds per level.")
    if config.parallel_jobs < 1 or config.parallel_levels < 1:
        raise UsageError("parallel_jobs and parallel_levels must be at least 1.")
    if config.seed is not None and config.seed < 0:
        raise UsageError("seed must be a number of 0 or more, or null to draw a fresh seed for every job attempt.")
    if config.session_ttl_hours <= 0:
        raise UsageError("session_ttl_hours must be positive.")
    if config.login_window_seconds <= 0 or config.login_account_limit < 1 or config.login_client_limit < 1:
        raise UsageError("login_window_seconds must be positive; login_account_limit, login_client_limit >= 1.")
    if config.sweep_seconds <= 0:
        raise UsageError("sweep_seconds must be positive.")
    if config.request_threads is not None and config.request_threads < 1:
        raise UsageError("request_threads must be 1 or more, or null for two per CPU (at least 4).")
    if config.pull_retry_seconds < 0:
        raise UsageError("pull_retry_seconds must be 0 (no retry) or more.")
    taken: dict[int, str] = {}
    for text, cpus in zip(config.cpusets, config.cpu_sets(), strict=True):
        for cpu in cpus:
            if cpu in taken:
                raise UsageError(
                    f"cpusets entries {taken[cpu]!r} and {text!r} share CPU {cpu}; "
                    "give each running level CPUs of its own."
                )
            taken[cpu] = text
    if config.name is not None and not 1 <= len(config.name.strip()) <= NAME_LIMIT:
        raise UsageError(f"name must be 1 to {NAME_LIMIT} characters: the contest's title on its page.")
    for key in ("description", "rules"):
        text = getattr(config, key)
        if text is not None and len(text) > TEXT_LIMIT:
            raise UsageError(f"{key} is {len(text):,} characters long; keep it under {TEXT_LIMIT:,} (Markdown).")
    if config.rules_url is not None and not re.match(r"^https?://\S+$", config.rules_url):
        raise UsageError(f"rules_url '{config.rules_url}' must be an http(s) link, e.g. https://example.org/rules.")
    if config.server_url is not None and not re.match(r"^https?://[^/\s]+/?$", config.server_url):
        raise UsageError(
            f"server_url '{config.server_url}' must be http(s)://HOST:PORT, the contest server as teams reach it."
        )
    if not 30 <= config.registry_token_ttl <= 3600:
        raise UsageError("registry_token_ttl must be 30 to 3600 seconds (registry tokens are meant to be short-lived).")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise UsageError("tls_cert and tls_key go together: give both (or neither).")
    if config.evaluator is not None and ":" not in config.evaluator:
        raise UsageError(f"evaluator '{config.evaluator}' must be MODULE:FUNCTION.")
    try:
        config.executor = ExecutorKind(config.executor)
    except ValueError:
        choices = " or ".join(kind.value for kind in ExecutorKind)
        raise UsageError(f"executor must be {choices}, not '{config.executor}'.") from None
    if config.executor is ExecutorKind.KUBERNETES:
        from contestkit.server.executors.kubernetes_settings import KubernetesSettings

        if source is not None and "kubernetes" in source:
            KubernetesSettings.from_mapping(source.section("kubernetes"))
        else:
            KubernetesSettings.from_mapping(config.kubernetes or {}, f"{config.config_path} 'kubernetes'")

    phases.contest_plan(config)  # phases, ranking and freeze: refused here rather than at the first submit


def registry_config_yaml(config: ServerConfig, http_secret: str) -> str:
    """A configuration for Debian's ``docker-registry`` (CNCF distribution 2.x) that trusts our tokens.

    Every request needs a bearer token from the contest server's realm, signed by the key whose
    certificate is the ``rootcertbundle``; the registry checks ``issuer`` and ``service`` (the token's
    ``aud``) against these values, so they come from server.yaml, where the issuer reads them too.
    """
    registry_dir = config.registry_dir.absolute()
    http: dict[str, Any] = {
        "addr": config.registry,
        "secret": http_secret,
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    cert, key = config.data_file(config.tls_cert), config.data_file(config.tls_key)
    if cert and key:
        http["tls"] = {"certificate": str(cert.absolute()), "key": str(key.absolute())}
    document = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "contestkit-registry"}},
        "storage": {"filesystem": {"rootdirectory": str(registry_dir / "data")}, "delete": {"enabled": True}},
        "http": http,
        "auth": {
            "token": {
                "realm": config.realm_url(),
                "service": config.registry_service,
                "issuer": config.registry_issuer,
                "rootcertbundle": str(config.token_cert_path.absolute()),
            }
        },
    }
    return "# docker-registry configuration written by `contestkit server init`.\n" + yaml.safe_dump(
        document, sort_keys=False
    )
