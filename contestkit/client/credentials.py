"""What the client keeps to act for a team: its login to the contest server and the team's
registry credentials, private on disk. The one store of both: ``contestkit login`` and
``contestkit registry login`` write it, and every command that needs them (``push``, ``submit``,
``jobs``, ``doctor``) reads it.

Both live in the user configuration directory (:func:`contestkit.projects.config.user_config_dir`,
``~/.config/contestkit/`` by default): the directory is created with mode 0700 and the files
with mode 0600, written atomically (a crash leaves the old file or the new one, never half of
one). The login is what ``contestkit login`` got from the server (its session cookie; the file
keeps its historical name ``session.json``); the registry credentials are the team's, from
``GET /rest/user``.

For scripts and CI, ``CONTESTKIT_SERVER`` and ``CONTESTKIT_TOKEN`` (an API token from
``POST /rest/token``) replace the session file entirely.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contestkit.containers import imageref
from contestkit.errors import ContestkitError
from contestkit.projects.config import user_config_dir

LOGIN_FILE = "session.json"
CREDENTIALS_FILE = "registry-credentials.json"
DEVICES_FILE = "devices.json"
# The server's device cookie (``server/security/throttle.py``): proof that this client logged in to an account
# before, so that a stranger's wrong guesses, which lock the account for unknown clients, never stop
# this one. Kept per server and email, and kept across `contestkit logout` (it opens nothing by itself).
DEVICE_COOKIE = "contestkit_device"
MAX_DEVICES = 64  # (server, email) pairs remembered; the oldest are forgotten first


def normalize_server(url: str) -> str:
    """``host:8000`` -> ``http://host:8000``; no trailing slash (the 2018 client did the same)."""
    url = url.strip().rstrip("/")
    if not url:
        raise ContestkitError("The server URL is empty; pass --server http://HOST:PORT.")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


@dataclass
class ServerLogin:
    """Who the client is logged in as, and where (the server's session cookie or an API token)."""

    server: str
    cookies: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    email: str | None = None
    team: str | None = None
    expires: float | None = None


@dataclass
class RegistryCredentials:
    """The team's registry account: ``url`` is ``HOST:PORT/<namespace>``."""

    url: str
    username: str
    password: str
    scheme: str = "https"
    server: str | None = None
    docker_config: bool = False  # whether `docker login` stored them for the docker CLI too

    @property
    def host(self) -> str:
        return imageref.split_registry(self.url)[0]

    @property
    def namespace(self) -> str:
        return imageref.split_registry(self.url)[1]

    @classmethod
    def from_user(cls, document: dict[str, Any], server: str | None = None) -> RegistryCredentials:
        """From the ``cr`` object of ``GET /rest/user``."""
        try:
            cr = document["cr"]
            return cls(
                url=str(cr["url"]).strip().rstrip("/"),
                username=str(cr["username"]),
                password=str(cr["password"]),
                scheme=str(cr.get("scheme") or "https"),
                server=server,
            )
        except (KeyError, TypeError):
            raise ContestkitError(
                "The contest server did not say which registry your team uses (no 'cr' in /rest/user); "
                "ask the organisers whether your team has a registry account."
            ) from None


def _write_private(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_private(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened the permissions (a copy, a backup restore): tighten them back.
        os.chmod(path, 0o600)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ContestkitError(f"{path} is damaged; delete it and run `contestkit login` again.") from None
    return document if isinstance(document, dict) else None


def load_login() -> ServerLogin | None:
    """The login ``contestkit login`` saved, or one made of CONTESTKIT_SERVER + CONTESTKIT_TOKEN."""
    token = os.environ.get("CONTESTKIT_TOKEN")
    server = os.environ.get("CONTESTKIT_SERVER")
    if token:
        if not server:
            stored = _read_private(user_config_dir() / LOGIN_FILE) or {}
            server = stored.get("server")
        if not server:
            raise ContestkitError("CONTESTKIT_TOKEN is set but no server is known; set CONTESTKIT_SERVER too.")
        return ServerLogin(server=normalize_server(server), token=token)
    return load_stored_login()


def load_stored_login() -> ServerLogin | None:
    """The login ``contestkit login`` saved, whatever the environment says (logout ends it)."""
    document = _read_private(user_config_dir() / LOGIN_FILE)
    if not document or not document.get("server"):
        return None
    known = {k: v for k, v in document.items() if k in ServerLogin.__dataclass_fields__}
    return ServerLogin(**known)


def save_login(login: ServerLogin) -> Path:
    path = user_config_dir() / LOGIN_FILE
    _write_private(path, asdict(login))
    return path


def clear_login() -> None:
    (user_config_dir() / LOGIN_FILE).unlink(missing_ok=True)


def _device_key(server: str, email: str) -> str:
    return f"{normalize_server(server)} {email.strip().lower()}"


def load_device_cookie(server: str, email: str) -> str | None:
    """The device cookie this server gave this client for ``email``, if it gave one."""
    value = (_read_private(user_config_dir() / DEVICES_FILE) or {}).get(_device_key(server, email))
    return value if isinstance(value, str) else None


def save_device_cookie(server: str, email: str, cookie: str) -> None:
    """Remember the device cookie for the next `contestkit login` to this server as ``email``."""
    path = user_config_dir() / DEVICES_FILE
    devices = {k: v for k, v in (_read_private(path) or {}).items() if isinstance(v, str)}
    devices.pop(_device_key(server, email), None)
    devices[_device_key(server, email)] = cookie  # last: the newest
    _write_private(path, dict(list(devices.items())[-MAX_DEVICES:]))


def known_server(explicit: str | None = None) -> str | None:
    """The server to talk to: --server, else CONTESTKIT_SERVER, else the last login's."""
    if explicit:
        return normalize_server(explicit)
    if os.environ.get("CONTESTKIT_SERVER"):
        return normalize_server(os.environ["CONTESTKIT_SERVER"])
    document = _read_private(user_config_dir() / LOGIN_FILE)
    return normalize_server(document["server"]) if document and document.get("server") else None


def load_registry_credentials() -> RegistryCredentials | None:
    document = _read_private(user_config_dir() / CREDENTIALS_FILE)
    if not document:
        return None
    known = {k: v for k, v in document.items() if k in RegistryCredentials.__dataclass_fields__}
    try:
        return RegistryCredentials(**known)
    except TypeError:
        return None


def save_registry_credentials(credentials: RegistryCredentials) -> Path:
    path = user_config_dir() / CREDENTIALS_FILE
    _write_private(path, asdict(credentials))
    return path


def clear_registry_credentials() -> None:
    (user_config_dir() / CREDENTIALS_FILE).unlink(missing_ok=True)
