"""The registry's token issuer: who may do what in the team registry, and the signed tokens that say so.

The registry (CNCF distribution, ``auth: token``) trusts nobody's password: it answers a request
without a valid bearer token with a 401 that names our realm, the client (``dockerd``) asks the realm
for a token with the team's registry credentials and the scopes it needs, and the registry checks the
token's signature, issuer, audience, expiry and access list. So the rules of who may touch which
repository live here, in one place, and the registry enforces them on every request.

Grants (``grant``):

- a team: ``pull`` and ``push`` on repositories under ``<its namespace>/``, nothing else (no
  ``delete``, no catalog: the catalog would list every team's repositories);
- the evaluator account: ``pull`` on every repository (the server pulls each job's image with it);
- the admin account: whatever it asks for (catalog, delete, ``*``);
- everything else: an empty grant, a token with an empty ``access`` list, as the token spec says.

Registry passwords. A team's registry password is ``HMAC-SHA256(key, team id, generation)``, with
``key`` a random secret in the data directory (``registry/credentials.key``, mode 0600) and
``generation`` a counter in the teams table. The database therefore holds no registry secret at all,
yet ``GET /rest/user`` can still hand the team its password, as the 2018 API does, and the same
password comes back on every machine the team logs in from. Rotating it (``contestkit server
rotate-registry-password``, and every ``set-password``) bumps the generation: the old password stops
working at the next token request, i.e. within the token lifetime (``registry_token_ttl``, minutes).
Issuing a fresh random password on every ``/rest/user`` instead would log a team's other machines
out whenever one of them logs in.

The evaluator's and the admin's passwords are random and kept in ``server.yaml`` (mode 0600), next to
the token signing key: whoever can read one can read the other, so keeping them there adds no risk.

Signing: ES256 with a P-256 key (``registry/token.key``, 0600) whose self-signed certificate
(``registry/token.crt``) is the registry's ``rootcertbundle``. Each token carries the certificate in
its ``x5c`` header, which distribution 2.x and 3.x both accept (2.8 would also take a libtrust
``kid``, which 3.x matches differently). ``aud`` is one string, as 2.8 decodes it. The answer has no
``refresh_token``: with one, Docker switches to the OAuth POST flow, which we do not serve.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from contestkit.errors import ContestkitError

ALGORITHM = "ES256"
TEAM_ACTIONS = ("pull", "push")
EVALUATOR_ACTIONS = ("pull",)
PASSWORD_PREFIX = "ckr_"


class Role(str, Enum):
    """Who a registry account belongs to; the grant rules depend only on this and the namespace."""

    TEAM = "team"
    EVALUATOR = "evaluator"
    ADMIN = "admin"


@dataclass(frozen=True)
class Account:
    """An authenticated registry account: its user name, role and (for a team) its namespace."""

    username: str
    role: Role
    namespace: str | None = None


@dataclass(frozen=True)
class Scope:
    """One requested scope, ``type[(class)]:name:action,action`` (e.g. ``repository:alpha/agent:pull,push``)."""

    type: str
    name: str
    actions: tuple[str, ...]
    resource_class: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """The scope, or None for text that is not one (it then gets nothing, like any unknown scope).

        The name may itself hold colons (a registry host with a port), so the type is what comes
        before the first colon and the actions what comes after the last.
        """
        head, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not head or not name:
            return None
        resource_class = None
        if head.endswith(")") and "(" in head:
            head, _, resource_class = head[:-1].partition("(")
        wanted = tuple(dict.fromkeys(a for a in actions.split(",") if a))
        return cls(type=head, name=name, actions=wanted, resource_class=resource_class or None)


def parse_scopes(values: list[str]) -> list[Scope]:
    """All scopes of the ``scope`` query parameters (each may hold several, separated by spaces)."""
    scopes: list[Scope] = []
    for value in values:
        for text in value.split():
            scope = Scope.parse(text)
            if scope is not None:
                scopes.append(scope)
    return scopes


def grant(account: Account | None, scopes: list[Scope]) -> list[dict[str, Any]]:
    """The ``access`` claim: for each scope, the requested actions this account may have (none: left out)."""
    access: list[dict[str, Any]] = []
    for scope in scopes:
        allowed = _allowed(account, scope)
        actions = [a for a in scope.actions if a in allowed or "*" in allowed]
        if not actions:
            continue
        entry: dict[str, Any] = {"type": scope.type, "name": scope.name, "actions": actions}
        if scope.resource_class:
            entry["class"] = scope.resource_class
        access.append(entry)
    return access


def _allowed(account: Account | None, scope: Scope) -> tuple[str, ...]:
    if account is None:
        return ()
    if account.role is Role.ADMIN:
        return ("*",)
    if scope.type != "repository":
        return ()  # the catalog and anything else are the admin's
    if account.role is Role.EVALUATOR:
        return EVALUATOR_ACTIONS
    if account.namespace and scope.name.startswith(account.namespace + "/"):
        return TEAM_ACTIONS
    return ()


# -- team registry passwords -------------------------------------------------------------------------


def team_password(key: bytes, team_id: int, generation: int) -> str:
    """The team's registry password: derived, never stored, changed by bumping ``generation``."""
    message = f"contestkit registry password\0{team_id}\0{generation}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return PASSWORD_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (text that is not valid UTF-8 matches nothing)."""
    try:
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    except UnicodeEncodeError:
        return False


# -- keys and certificate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """The token signing key and the base64 DER of its certificate, for the ``x5c`` header."""

    private_key: Any
    certificate_der_b64: str

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> SigningKey:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ContestkitError(
                f"The registry token signing key {key_path} or its certificate {cert_path} cannot be read ({exc}); "
                "run `contestkit server init --force` on the data directory to make new ones."
            ) from None
        der = certificate.public_bytes(serialization.Encoding.DER)
        return cls(private_key=private_key, certificate_der_b64=base64.b64encode(der).decode("ascii"))


def write_signing_key(key_path: Path, cert_path: Path, *, common_name: str, years: int = 10) -> None:
    """A new P-256 key (0600) and its self-signed certificate, which the registry trusts as the root."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from contestkit.server.config import write_private

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    write_private(key_path, pem_key)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def write_credentials_key(path: Path) -> None:
    """The secret the team registry passwords are derived from (0600)."""
    from contestkit.server.config import write_private

    write_private(path, secrets.token_hex(32) + "\n")


def read_credentials_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ContestkitError(
            f"The registry credentials key {path} cannot be read ({exc}); restore it from a backup (a new one "
            "changes every team's registry password)."
        ) from None
    if len(key) < 16:
        raise ContestkitError(f"The registry credentials key {path} is too short; restore it from a backup.")
    return key


# -- tokens --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """Mints the registry's bearer tokens: ``issuer`` and ``service`` must match the registry's config."""

    signing_key: SigningKey
    issuer: str
    service: str
    ttl_seconds: int

    def token(
        self,
        subject: str,
        access: list[dict[str, Any]],
        *,
        now: float | None = None,
        ttl_seconds: int | None = None,
        audience: str | None = None,
    ) -> tuple[str, int, float]:
        """(the signed JWT, its lifetime in seconds, the time it was issued).

        ``now``, ``ttl_seconds`` and ``audience`` other than the defaults exist for the tests, which
        show that the registry refuses expired tokens and tokens meant for another service.
        """
        import jwt

        issued = time.time() if now is None else now
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service if audience is None else audience,  # one string: 2.8 does not decode a list
            "exp": int(issued) + ttl,
            "nbf": int(issued) - 1,
            "iat": int(issued),
            "jti": secrets.token_urlsafe(16),
            "access": access,
        }
        encoded = jwt.encode(
            claims,
            self.signing_key.private_key,
            algorithm=ALGORITHM,
            headers={"x5c": [self.signing_key.certificate_der_b64]},
        )
        return encoded, ttl, issued


def token_response(token: str, expires_in: int, issued_at: float) -> dict[str, Any]:
    """The realm's answer: ``token`` and ``access_token`` (both names are in use), never a refresh token."""
    stamp = dt.datetime.fromtimestamp(issued_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": stamp}


# -- the data directory's registry files -------------------------------------------------------------


def prepare_data_dir(config: Any) -> list[str]:
    """Make what token auth needs in a data directory, and upgrade one made for htpasswd.

    Called by ``server init`` and at every ``server run`` start, so an old data directory is
    upgraded when its server starts (its database migration drops the clear-text registry passwords
    at the same moment). Keys that exist are kept: a new signing key would void every token, a new
    credentials key every team's password. Returns sentences for the organiser (what changed and
    what to do), empty when nothing did.
    """
    import yaml

    from contestkit.server.config import registry_config_yaml, write_private

    notes: list[str] = []
    config.registry_dir.mkdir(parents=True, exist_ok=True)
    (config.registry_dir / "data").mkdir(exist_ok=True)
    if not config.token_key_path.exists() or not config.token_cert_path.exists():
        write_signing_key(
            config.token_key_path, config.token_cert_path, common_name=f"{config.registry_issuer} registry tokens"
        )
    if not config.credentials_key_path.exists():
        write_credentials_key(config.credentials_key_path)
    if not config.registry_admin_password or not config.evaluator_registry_password:
        config.registry_admin_password = config.registry_admin_password or secrets.token_urlsafe(24)
        config.evaluator_registry_password = config.evaluator_registry_password or secrets.token_urlsafe(24)
        config.save()
    path = config.registry_dir / "config.yml"
    try:
        current = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, yaml.YAMLError):
        current = None
    current = current if isinstance(current, dict) else {}
    http = current.get("http") if isinstance(current.get("http"), dict) else {}
    secret = str(http.get("secret") or secrets.token_urlsafe(24))
    wanted = registry_config_yaml(config, secret)
    if not path.exists() or yaml.safe_load(wanted) != current:
        write_private(path, wanted)
        if current:
            notes.append(
                f"The registry configuration {path} now uses token auth from {config.realm_url()}; "
                "restart docker-registry with it, and teams run `contestkit registry login` again."
            )
    if config.htpasswd_path.exists():
        config.htpasswd_path.unlink()
        notes.append(f"Removed {config.htpasswd_path}: the registry no longer reads passwords, it checks tokens.")
    return notes
