"""Image references, Docker's grammar in one place: names, tags, digests, and splitting them.

Every part of contestkit that reads or writes an image reference (``new``, ``build``, ``push``,
the config, the toolkit images, the contest server's job queue and its evaluator) asks this
module, so a rule is written once and two parts can never disagree about what a tag is.

The grammar is Docker's (distribution's ``reference`` package, which docker-py's
``parse_repository_tag`` also follows)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ registry "/" ] path        (registry: has a '.' or a ':', or is 'localhost')
    registry   := host [ ":" port ]            (host: a DNS name, an IPv4 address, or [IPv6] in brackets)
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex digits (the only algorithm registries use in practice)

The messages say which rule a name broke and suggest a fix, because "invalid reference format"
is all Docker itself would say.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from contestkit.errors import UsageError

#: One path component of a repository name.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
#: A repository path: components joined by '/' (no registry host).
PATH = re.compile(rf"{COMPONENT.pattern}(?:/{COMPONENT.pattern})*")
#: A tag: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: A content digest as registries report it after a push.
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: The tag Docker means when a reference names none.
DEFAULT_TAG = "latest"
#: The longest name registries (and ``contestkit build``) accept for one repository name.
MAX_NAME_LENGTH = 128
#: Docker's limit on a full repository name (registry/path).
MAX_REPOSITORY_LENGTH = 255
#: One dot-separated part of a registry host name.
_DOMAIN_COMPONENT = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])")


@dataclass(frozen=True)
class ImageRef:
    """One parsed image reference; ``str()`` gives it back in Docker's spelling.

    ``registry`` is ``None`` for Docker Hub's implicit one; ``tag`` and ``digest`` are ``None``
    when the reference has none (Docker then means ``latest``, see :attr:`tag_or_default`).
    """

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: what ``docker push`` and the engine's pull call take as the name."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def tag_or_default(self) -> str:
        """The tag, ``latest`` when none was given."""
        return self.tag or DEFAULT_TAG

    @property
    def version(self) -> str:
        """What pins the image: the digest when there is one, else the tag (``latest`` by default).

        The engine's pull call takes either in its ``tag`` argument.
        """
        return self.digest or self.tag_or_default

    def pinned(self, digest: str) -> ImageRef:
        """The same image pinned by ``digest`` alone (``host/team/agent@sha256:...``): what a server runs,
        so that every level, and every re-run, runs the very image that was submitted."""
        if not DIGEST.fullmatch(digest):
            raise UsageError(f"{digest!r} is not a digest: a digest is sha256: and 64 lowercase hex digits.")
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_registry(first: str) -> bool:
    """Docker's rule for whether the first component of a name is a registry host."""
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def parse(reference: str) -> ImageRef:
    """``reference`` split into its parts, or a :class:`UsageError` saying which part is wrong.

    Strict where Docker is strict (so a bad reference is refused here with the rule, not by the
    engine with "invalid reference format"); the registry host is recognised as Docker does it.
    """
    text = reference.strip()
    if not text:
        raise UsageError("the image reference is empty; give NAME[:TAG], for example my-agent:v1.")
    rest, at, digest = text.partition("@")
    if at and not DIGEST.fullmatch(digest):
        raise UsageError(f"{reference!r} has the digest {digest!r}: a digest is sha256: and 64 lowercase hex digits.")
    registry: str | None = None
    first, slash, remainder = rest.partition("/")
    if slash and is_registry(first):
        registry, rest = first, remainder
    repository, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if colon and not TAG.fullmatch(tag):
        raise UsageError(f"{reference!r} has the tag {tag!r}: {_TAG_RULE}.")
    if registry is not None:
        try:
            validate_registry(registry)
        except UsageError:
            raise UsageError(f"{reference!r}: {registry!r} is not a registry host (HOST or HOST:PORT).") from None
    for component in repository.split("/"):
        problem = name_problem(component)
        if problem:
            raise UsageError(f"{reference!r} is not an image reference: {problem}.")
    full = f"{registry}/{repository}" if registry else repository
    if len(full) > MAX_REPOSITORY_LENGTH:
        raise UsageError(
            f"{reference!r}: the repository name is {len(full)} characters long; Docker allows {MAX_REPOSITORY_LENGTH}."
        )
    return ImageRef(registry, repository, tag or None, digest or None)


def split(reference: str) -> tuple[str, str]:
    """(name, tag or digest) as the engine's pull, push and tag calls take them; no tag means ``latest``."""
    ref = parse(reference)
    return ref.name, ref.version


def registry_host(registry: str) -> str:
    """The ``HOST[:PORT]`` part of ``registry.example.com:5000/team`` (what logins are keyed by)."""
    return split_registry(registry)[0]


def split_registry(registry: str) -> tuple[str, str]:
    """``HOST[:PORT][/ORG...]`` (a scheme, if any, dropped) as (``HOST[:PORT]``, ``ORG...``, empty if none)."""
    host, _, namespace = registry.split("://", 1)[-1].partition("/")
    return host, namespace


def split_host_port(host: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` as (host, port): ``[::1]:5000`` is (``[::1]``, 5000), an IPv6 host keeping its
    brackets (URLs need them); ``registry.example.com`` is (``registry.example.com``, None)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise UsageError(f"{host!r}: an IPv6 address goes in brackets, e.g. [::1]:5000.")
        name, rest = host[: end + 1], host[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UsageError(f"{host!r}: only :PORT may follow the IPv6 address, e.g. [::1]:5000.")
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
    if not port:
        return name, None
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"{host!r}: port {port!r} must be a number from 1 to 65535.")
    return name, int(port)


def _host_problem(hostname: str) -> bool:
    """Whether ``hostname`` is neither a DNS name nor an IPv4 address nor a bracketed IPv6 address."""
    if hostname.startswith("[") and hostname.endswith("]"):
        try:
            ipaddress.IPv6Address(hostname[1:-1])
        except ValueError:
            return True
        return False
    return not hostname or not all(_DOMAIN_COMPONENT.fullmatch(part) for part in hostname.split("."))


_TAG_RULE = "use up to 128 letters, digits, _ . - (not starting with . or -)"


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid image tag, or ``None`` if it is."""
    if TAG.fullmatch(tag):
        return None
    return f"'{tag}' is not a valid image tag: {_TAG_RULE}"


def validate_tag(tag: str) -> str:
    """``tag`` if Docker accepts it as a tag, else a :class:`UsageError`."""
    problem = tag_problem(tag)
    if problem:
        raise UsageError(problem + ".")
    return tag


def is_digest(text: str) -> bool:
    """Whether ``text`` is a ``sha256:`` digest as a registry reports it."""
    return DIGEST.fullmatch(text) is not None


def parse_path_and_tag(text: str) -> tuple[str | None, str] | None:
    """``[PATH:]TAG`` (no registry, no digest) -> (path or ``None``, tag); ``None`` when it is not that form.

    The form a team submits a job with: the server prefixes its registry and the team's
    namespace, so a bare ``v1`` means the tag ``v1`` (of the server's default repository), not a
    repository called ``v1`` as :func:`parse` would read it.
    """
    path, colon, tag = text.rpartition(":")
    if not colon:
        path, tag = "", text
    if colon and not PATH.fullmatch(path):
        return None
    if not TAG.fullmatch(tag):
        return None
    return (path or None), tag


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid repository name component, or ``None`` if it is.

    The rule (Docker's reference grammar for one path component): lowercase letters and digits,
    separated by ``.``, ``_``, ``__`` or runs of ``-``; it starts and ends with a letter or digit.
    """
    if not name:
        return "the name is empty; use lowercase letters, digits and . _ - (for example my-agent)"
    if "/" in name:
        return (
            f"{name!r} contains '/': NAME is one repository component (it is also the directory name); "
            "give the registry host and organisation with --registry HOST/ORG"
        )
    if ":" in name or "@" in name:
        sep = ":" if ":" in name else "@"
        return f"{name!r} contains {sep!r}: tags and digests are chosen at build time, not here"
    suggestion = suggest_name(name)
    hint = f"; try {suggestion!r}" if suggestion else ""
    if any(c.isupper() for c in name):
        return f"{name!r} has uppercase letters, which Docker image names forbid{hint}"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        allowed = "only lowercase letters, digits, '.', '_' and '-' are allowed"
        return f"{name!r} contains {shown}: {allowed}{hint}"
    if not name[0].isalnum() or not name[-1].isalnum():
        return f"{name!r} must start and end with a lowercase letter or digit"
    if not COMPONENT.fullmatch(name):
        return (
            f"{name!r} has separators in a row: between letters or digits use one '.', one or two '_', "
            "or any number of '-'"
        )
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is {len(name)} characters long; image names may have at most {MAX_NAME_LENGTH}"
    return None


def validate_name(name: str, where: str) -> str:
    """``name`` if it is a valid repository name component; else a :class:`UsageError` that starts with ``where``.

    ``where`` says where the name came from (a file and line, or "invalid project name" for
    ``contestkit new``), because the rule alone does not tell the user which name to fix.
    """
    problem = name_problem(name)
    if problem:
        raise UsageError(f"{where}: '{name}' is not a valid image name: {problem}.")
    return name


def suggest_name(name: str) -> str | None:
    """A valid name close to ``name`` (lowercased, other characters turned into '-'), if any."""
    text = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    text = re.sub(r"[._-]*-[._-]*", "-", text).strip("._-")
    return text if text and text != name and COMPONENT.fullmatch(text) else None


def sanitize_name(text: str) -> str:
    """A Docker-valid repository name derived from ``text`` (a directory name)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("._-")
    name = re.sub(r"[._-]{2,}", "-", name)
    return name or "agent"


def validate_registry(registry: str) -> str:
    """A registry as ``HOST[:PORT][/ORG...]`` (no scheme, no trailing slash), normalised."""
    value = registry.strip().rstrip("/")
    if "://" in value:
        scheme = value.split("://", 1)[0]
        raise UsageError(
            f"invalid registry {registry!r}: give HOST or HOST/ORG without {scheme}:// "
            f"(for example {value.split('://', 1)[1] or 'registry.example.com/team'})."
        )
    if not value:
        raise UsageError("invalid registry: it is empty; give HOST or HOST/ORG, for example registry.example.com/team.")
    host, path = split_registry(value)
    try:
        hostname, _ = split_host_port(host)
    except UsageError as exc:
        raise UsageError(f"invalid registry {registry!r}: {exc}") from None
    if _host_problem(hostname):
        raise UsageError(
            f"invalid registry {registry!r}: {host!r} is not a host name "
            "(letters, digits and '-', dot-separated, or [IPv6] in brackets; optionally :PORT)."
        )
    for component in path.split("/") if path else []:
        problem = name_problem(component)
        if problem:
            raise UsageError(f"invalid registry {registry!r}: organisation part {problem}.")
    return value
