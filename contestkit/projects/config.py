"""Configuration: where each setting comes from, and why it wins.

Three places hold settings, and one value per key is chosen by this precedence (highest first):

1. **Environment**: ``CONTESTKIT_<KEY>`` (``CONTESTKIT_REGISTRY``, ``CONTESTKIT_PYTHON_IMAGE``, ...),
   so CI and one-off runs can override anything without editing files. Map-valued keys take
   ``K=V,K2=V2`` (``CONTESTKIT_BUILD_ARGS=HTTP_PROXY=http://proxy:3128``). Secrets are never read
   from the environment by this module, and unknown ``CONTESTKIT_*`` variables are ignored
   (other tools and future versions use the prefix too).
2. **Project file**: ``contestkit.yaml`` at the root of an agent project (the directory, or the
   nearest parent, that holds it). It is committed with the agent, so it holds what everyone on
   the team shares: ``name``, ``registry``, ``base_image``, ``entry``, ``dockerfile``,
   ``build_args``. It may never hold credentials.
3. **User file**: ``$XDG_CONFIG_HOME/contestkit/config.yaml`` (``~/.config/contestkit/...`` when
   ``XDG_CONFIG_HOME`` is unset): per-person settings. Logins and registry credentials live
   beside it, in :mod:`contestkit.client.credentials`' own files, never here. The file is written with
   mode 0600.
4. **Defaults** (the table :data:`KEYS`), plus, for ``ca_bundle`` and ``wheels_dir`` only, what the
   user's environment already says for pip (``PIP_CERT``, ``REQUESTS_CA_BUNDLE``,
   ``SSL_CERT_FILE``; ``PIP_FIND_LINKS``), so a machine already set up for a TLS-re-signing proxy
   or an offline wheel mirror needs no contestkit-specific setup.

Map-valued keys (``build_args``) are merged across levels, the higher level winning per entry;
every other key is taken whole from the highest level that sets it.

Files are strict: malformed YAML, a key written twice, an unknown key, a key in the wrong file or a
value of the wrong type raises :class:`UsageError` naming the file, the line and the key (with the
nearest valid name, or an example of that key), because a typo such as ``regsitry:`` silently
ignored would tag and push images to the wrong place. The reading is :mod:`contestkit.yamlconfig`'s,
shared with ``server.yaml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from contestkit import yamlconfig
from contestkit.errors import UsageError
from contestkit.yamlconfig import Kind, Setting

PROJECT_FILE = "contestkit.yaml"
USER_FILE = "config.yaml"
ENV_PREFIX = "CONTESTKIT_"


class Scope(str, Enum):
    """Which file a key may be set in."""

    PROJECT = "project"  # contestkit.yaml, shared by the team
    USER = "user"  # the user's config.yaml, per person


PROJECT = Scope.PROJECT
USER = Scope.USER


@dataclass(frozen=True)
class Key:
    """One setting: its type, default, which files may hold it, what it is for, and an example value."""

    name: str
    kind: Kind  # STR, PATH or STR_MAP
    default: Any
    scopes: frozenset[str]
    help: str
    example: str  # the value as YAML, shown when a file gives this key a value of the wrong type

    @property
    def setting(self) -> Setting:
        """How :mod:`contestkit.yamlconfig` checks this key's values."""
        return Setting(self.name, self.kind, self.example, nullable=True)


def _key(name: str, kind: Kind, default: Any, scopes: str, help: str, example: str) -> Key:
    return Key(name, kind, default, frozenset(scopes.split(",")), help, example)


#: Every key contestkit understands. Add new keys here (with a help line) rather than reading
#: files ad hoc, so unknown keys stay errors.
KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        _key("name", Kind.STR, None, PROJECT, "Image name of the agent (lowercase, digits, . _ -).", "my-agent"),
        _key(
            "registry",
            Kind.STR,
            None,
            "project,user",
            "Registry host and namespace images are pushed to, e.g. registry.example.com/team.",
            "registry.example.com/team",
        ),
        _key(
            "base_image",
            Kind.STR,
            "contestkit/agent:cpu",
            "project,user",
            "Agent base image the project's Dockerfile starts from (passed as build arg BASE_IMAGE).",
            "contestkit/agent:pytorch",
        ),
        _key(
            "entry",
            Kind.STR,
            "agent.py",
            PROJECT,
            "The agent's entry point: a script path or MODULE:FUNC.",
            "agent.py",
        ),
        _key(
            "dockerfile",
            Kind.STR,
            "Dockerfile",
            PROJECT,
            "Dockerfile of the agent image, relative to the project.",
            "Dockerfile",
        ),
        _key(
            "build_args",
            Kind.STR_MAP,
            {},
            "project,user",
            "Extra --build-arg values for `contestkit build`.",
            "{HTTP_PROXY: http://proxy:3128}",
        ),
        _key(
            "python_image",
            Kind.STR,
            "python:3.11-slim",
            "project,user",
            "Python image the toolkit's own images start from (`contestkit images bootstrap` makes a "
            "local stand-in when no registry is reachable).",
            "python:3.11-slim",
        ),
        _key(
            "ca_bundle",
            Kind.PATH,
            None,
            "project,user",
            "Extra CA certificates (PEM) that pip and apt trust inside image builds; defaults to "
            "$PIP_CERT, $REQUESTS_CA_BUNDLE or $SSL_CERT_FILE.",
            "/etc/ssl/certs/ca-certificates.crt",
        ),
        _key(
            "wheels_dir",
            Kind.PATH,
            None,
            "project,user",
            "Directory of local wheels offered to pip in framework image builds (defaults to a local "
            "$PIP_FIND_LINKS directory).",
            "~/wheels",
        ),
        _key(
            "torch_pip_args",
            Kind.STR,
            None,
            "project,user",
            "pip arguments that install a CPU build of torch in contestkit/agent:pytorch.",
            "--index-url https://download.pytorch.org/whl/cpu",
        ),
        _key(
            "debian_mirror",
            Kind.STR,
            None,
            "user",
            "Debian mirror for `contestkit images bootstrap`.",
            "http://deb.debian.org/debian",
        ),
    )
}

#: Keys earlier versions declared but no command ever read, and where that setting lives now. A file
#: that still holds one gets a sentence saying so (files stay strict: a silently ignored key would
#: let a user believe it does something).
RETIRED_KEYS: dict[str, str] = {
    "cpus": "eval's CPU limit is its --cpus option (default: the contest's 6)",
    "memory": "eval's memory limit is its --memory option (default: the contest's 56g)",
    "server": "the server is the one of your last `contestkit login` (or $CONTESTKIT_SERVER)",
    "token": "`contestkit login` keeps the login in its own private file (or set $CONTESTKIT_TOKEN)",
    "credentials": "registry credentials come from `contestkit registry login`, which keeps them in its own file",
}

#: Environment variables consulted, in order, when ``ca_bundle`` is not configured.
CA_BUNDLE_ENV = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@dataclass
class Config:
    """The effective settings, and for each key where its value came from (for ``doctor``)."""

    values: dict[str, Any]
    sources: dict[str, str]
    project_file: Path | None = None
    user_file: Path | None = None
    explicit: set[str] = field(default_factory=set)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def get(self, name: str) -> Any:
        """The value of ``name`` (a key of :data:`KEYS`)."""
        if name not in KEYS:
            raise KeyError(name)
        return self.values[name]

    def is_set(self, name: str) -> bool:
        """Whether the user set ``name`` anywhere (env or a file), as opposed to the default."""
        return name in self.explicit

    def public(self) -> dict[str, Any]:
        """Values as JSON can hold them, for ``doctor --json`` (no key holds a secret: those live in
        :mod:`contestkit.client.credentials`)."""
        return {name: str(value) if isinstance(value, Path) else value for name, value in self.values.items()}


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/contestkit`` (``~/.config/contestkit`` when unset), per the XDG spec.

    The one place this folder is computed: the user config file and the stored logins and
    registry credentials (:mod:`contestkit.client.credentials`) all live in it.
    """
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base).expanduser() / "contestkit"


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user config file (it may not exist)."""
    return user_config_dir(env) / USER_FILE


def find_project_file(start: Path | str | None = None) -> Path | None:
    """The nearest ``contestkit.yaml`` in ``start`` or a parent directory, or ``None``."""
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Reading files


def _convert(key: Key, raw: Any, where: str, base_dir: Path) -> Any:
    """Check ``raw`` against the key's type; ``where`` is "FILE, line N" or "$VAR"."""
    return yamlconfig.convert(key.setting, raw, where, base_dir=base_dir)


def read_config_file(path: Path, scope: str) -> dict[str, tuple[Any, int]]:
    """Parse and validate one config file: ``{key: (value, line)}``.

    ``scope`` is :data:`PROJECT` or :data:`USER`; a key that belongs to the other file
    (``debian_mirror`` in ``contestkit.yaml``) is an error. The reading (duplicates, unknown keys,
    types, line numbers) is :mod:`contestkit.yamlconfig`'s, the same as ``server.yaml``'s.
    """
    section = yamlconfig.load(path)
    yamlconfig.refuse_retired(section, RETIRED_KEYS)
    for name in section:
        if name in KEYS and scope not in KEYS[name].scopes:
            other = "the project's contestkit.yaml" if PROJECT in KEYS[name].scopes else str(user_config_path())
            raise UsageError(f"{section.where(name)}: key '{name}' belongs in {other}, not here.")
    values = yamlconfig.read(section, {name: key.setting for name, key in KEYS.items()}, base_dir=path.parent)
    return {name: (value, section.line(name) or 0) for name, value in values.items()}


# A comma starts a new pair only when NAME= follows it, so values may hold commas (NO_PROXY=a,b).
_PAIR_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*=)")


def _parse_env_map(text: str, var: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in _PAIR_SPLIT.split(text))):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise UsageError(f"${var}: expected NAME=value[,NAME=value...], got {part!r}.")
        out[name.strip()] = value
    return out


# --------------------------------------------------------------------------------------------
# Effective configuration


def _fallback(name: str, env: Mapping[str, str]) -> tuple[Any, str] | None:
    """Defaults borrowed from the user's existing pip/TLS environment."""
    if name == "ca_bundle":
        for var in CA_BUNDLE_ENV:
            value = env.get(var)
            if value and os.path.isfile(value):
                return Path(value), f"${var}"
    if name == "wheels_dir":
        for entry in (env.get("PIP_FIND_LINKS") or "").split():
            path = entry.removeprefix("file://")
            if "://" not in path and os.path.isdir(path):
                return Path(path), "$PIP_FIND_LINKS"
    return None


def load_config(
    project_dir: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    user_file: Path | None = None,
    search_parents: bool = True,
) -> Config:
    """The effective configuration for a command run in ``project_dir`` (default: cwd).

    ``project_dir`` need not be a project: outside one, only the environment, the user file and
    the defaults apply. ``env`` and ``user_file`` exist for tests and for tools embedding
    contestkit; by default the process environment and :func:`user_config_path` are used.
    """
    env = dict(os.environ if env is None else env)
    user_path = user_file or user_config_path(env)
    if search_parents:
        project_path = find_project_file(project_dir)
    else:
        candidate = Path(project_dir or Path.cwd()) / PROJECT_FILE
        project_path = candidate if candidate.is_file() else None

    user_entries: dict[str, tuple[Any, int]] = {}
    if user_path.is_file():
        user_entries = read_config_file(user_path, USER)
    project_entries = read_config_file(project_path, PROJECT) if project_path else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    explicit: set[str] = set()
    for name, key in KEYS.items():
        layers: list[tuple[Any, str]] = []  # lowest precedence first
        if name in user_entries:
            layers.append((user_entries[name][0], f"{user_path}:{user_entries[name][1]}"))
        if name in project_entries:
            layers.append((project_entries[name][0], f"{project_path}:{project_entries[name][1]}"))
        var = ENV_PREFIX + name.upper()
        if env.get(var, "") != "":
            raw: Any = env[var]
            if key.kind is Kind.STR_MAP:
                raw = _parse_env_map(raw, var)
            layers.append((_convert(key, raw, f"${var}", Path.cwd()), f"${var}"))

        if key.kind is Kind.STR_MAP:
            merged: dict[str, str] = dict(key.default)
            for value, _ in layers:
                merged.update(value or {})
            values[name] = merged
            sources[name] = " < ".join(src for _, src in layers) or "default"
            if layers:
                explicit.add(name)
            continue
        chosen = next(((v, s) for v, s in reversed(layers) if v is not None), None)
        if chosen is not None:
            explicit.add(name)
        else:
            chosen = _fallback(name, env) or (key.default, "default")
        values[name], sources[name] = chosen
    return Config(values, sources, project_path, user_path, explicit)


# --------------------------------------------------------------------------------------------
# Writing the user file


def save_user_config(
    updates: Mapping[str, Any],
    *,
    path: Path | None = None,
    remove: tuple[str, ...] = (),
) -> Path:
    """Set (or with ``remove``, delete) keys in the user file, keeping it private (mode 0600).

    The file is rewritten through a temporary file created 0600 and renamed over the old one, so
    a crash never leaves a half-written file. Comments in the file are not preserved.
    """
    path = path or user_config_path()
    current: dict[str, Any] = {}
    if path.is_file():
        current = {k: v for k, (v, _) in read_config_file(path, USER).items()}
        # keep paths as written, not resolved
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for k in current:
            if KEYS[k].kind is Kind.PATH:
                current[k] = raw.get(k)
    for name, value in updates.items():
        if name not in KEYS:
            raise yamlconfig.unknown_key(str(path), name, KEYS)
        if USER not in KEYS[name].scopes:
            raise UsageError(f"Key '{name}' belongs in the project's contestkit.yaml, not {path}.")
        _convert(KEYS[name], value, str(path), path.parent)
        current[name] = str(value) if isinstance(value, Path) else value
    for name in remove:
        current.pop(name, None)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# contestkit user configuration (private: mode 0600)\n")
        yaml.safe_dump(current, handle, sort_keys=True, default_flow_style=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
