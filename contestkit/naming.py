"""Docker's rules for image repository names, in one place for `new`, `build` and the config.

The messages say which rule a name broke and suggest a fix, because "invalid reference format"
is all Docker itself would say.
"""

from __future__ import annotations

import re

from contestkit.errors import UsageError

#: Docker's reference grammar for one path component of a repository name.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
#: The longest name registries (and ``contestkit build``) accept for one repository name.
MAX_NAME_LENGTH = 128
#: One dot-separated part of a registry host name.
_DOMAIN_COMPONENT = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Docker repository name component, or ``None`` if it is.

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
    host, _, path = value.partition("/")
    hostname, _, port = host.partition(":")
    if not hostname or not all(_DOMAIN_COMPONENT.fullmatch(part) for part in hostname.split(".")):
        raise UsageError(
            f"invalid registry {registry!r}: {host!r} is not a host name "
            "(letters, digits and '-', dot-separated, optionally :PORT)."
        )
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"invalid registry {registry!r}: port {port!r} must be a number from 1 to 65535.")
    for component in path.split("/") if path else []:
        problem = name_problem(component)
        if problem:
            raise UsageError(f"invalid registry {registry!r}: organisation part {problem}.")
    return value
