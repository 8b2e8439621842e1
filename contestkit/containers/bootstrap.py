"""``contestkit images bootstrap``: a local stand-in for the official slim Python image.

The toolkit images start from ``python:3.11-slim`` by default. Air-gapped clusters, CI sandboxes
and this project's own machines reach Debian's package mirrors but no image registry, so that
image cannot be pulled. This module makes an equivalent from Debian packages instead:

1. ``debootstrap --variant=minbase`` a Debian bookworm root with ``python3`` (3.11, the same minor
   version as ``python:3.11-slim``), ``python3-venv``, ``python3-pip``, ``python-is-python3`` and
   ``ca-certificates``;
2. make it behave like the official image where the Dockerfiles rely on it: ``python`` and
   ``pip`` work as root without a virtualenv (Debian's PEP 668 ``EXTERNALLY-MANAGED`` marker is
   removed, as the official image has none), ``LANG=C.UTF-8``;
3. slim it (no apt lists, no downloaded .debs, no docs/man pages/locales, and a dpkg rule that
   keeps future docs out), and
4. ``docker import`` it as :data:`contestkit.containers.images.BOOTSTRAP_IMAGE`.

Builds then use it automatically whenever ``python_image`` is left at its default and the
official image is not present (see :func:`contestkit.containers.images.resolve_python_image`).

It needs root (debootstrap creates device nodes and chroots) and the ``debootstrap`` program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contestkit import __version__
from contestkit.containers import imageref
from contestkit.containers.images import (
    BOOTSTRAP_IMAGE,
    LABEL_VERSION,
    BuildEvent,
    EventCallback,
    _client,
    inspect_image,
)
from contestkit.errors import ContestkitError
from contestkit.projects.config import Config, load_config

if TYPE_CHECKING:
    from docker import APIClient

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")

# Removed from the root before import: caches and documentation nobody in a container reads.
_PRUNE = (
    "var/cache/apt/archives",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/cache/debconf/templates.dat-old",
    "var/lib/apt/lists",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/common-licenses",
)

_DPKG_NODOC = """\
# contestkit: keep documentation out of the image, like the official slim images do
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""

_APT_SLIM = """\
// contestkit: no recommends, no cached .debs (as in the official slim images)
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
"""

IMPORT_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["python3"]',
)


def check_prerequisites() -> str:
    """Path of ``debootstrap``, or a :class:`ContestkitError` saying how to get what is missing."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise ContestkitError("Bootstrapping the base image needs root: run `sudo contestkit images bootstrap`.")
    path = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.path.exists(p)), None
    )
    if not path:
        raise ContestkitError(
            "debootstrap is not installed: `sudo apt-get install debootstrap` (or pull python:3.11-slim)."
        )
    return path


def _run_streaming(cmd: list[str], emit: EventCallback, what: str) -> None:
    """Run ``cmd``, sending each output line as an event; keep the tail for the error."""
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = (tail + [line])[-25:]
                emit(BuildEvent("output", BOOTSTRAP_IMAGE, line))
        code = proc.wait()
    if code != 0:
        output = "\n".join(tail)
        raise ContestkitError(
            f"{what} failed (exit status {code}); its last output:\n{output}\n"
            "Check that this machine reaches the Debian mirror (set debian_mirror in the user config "
            "to use another one) and try again."
        )


def _unmount_below(root: Path) -> None:
    """Unmount anything debootstrap left mounted inside ``root`` (it mounts /proc and /sys)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root.resolve()) + "/"
    targets = [m.split()[1] for m in mounts if len(m.split()) > 1 and (m.split()[1] + "/").startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def _finish_root(root: Path) -> None:
    """Make the debootstrapped root behave like the official image, and slim it."""
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    for rel in _PRUNE:
        target = root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.mkdir(parents=True)
        elif target.exists():
            target.unlink()
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/contestkit-nodoc").write_text(_DPKG_NODOC)
    (root / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/apt.conf.d/contestkit-slim").write_text(_APT_SLIM)
    # Docker provides these per container; the host's must not leak into the image.
    for rel in ("etc/resolv.conf", "etc/hostname"):
        target = root / rel
        if target.exists() or target.is_symlink():
            target.unlink()
            target.write_text("")


def bootstrap_base_image(
    on_event: Callable[[BuildEvent], None] | None = None,
    *,
    api: APIClient | None = None,
    config: Config | None = None,
    mirror: str | None = None,
    suite: str = SUITE,
    tag: str = BOOTSTRAP_IMAGE,
    force: bool = False,
    workdir: Path | None = None,
) -> str:
    """Build the Debian stand-in for the Python base image and import it into Docker; return its tag.

    Skips the work (seconds instead of minutes) when ``tag`` already exists, unless ``force``.
    ``mirror`` defaults to the ``debian_mirror`` setting, else debootstrap's own default.
    ``workdir`` is where the root is assembled (default: a temporary directory under /var/tmp,
    which, unlike /tmp, is not a tmpfs on most systems and allows device nodes).
    """

    def emit(event: BuildEvent) -> None:
        if on_event:
            on_event(event)

    config = config or load_config()
    mirror = mirror or config.debian_mirror
    with _client(api) as client:
        if not force and inspect_image(client, tag):
            emit(BuildEvent("info", tag, f"{tag} is already here (use --force to rebuild it)"))
            return tag
        debootstrap = check_prerequisites()
        started = time.monotonic()
        parent = workdir or Path("/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir())
        tmp = Path(tempfile.mkdtemp(prefix="contestkit-bootstrap-", dir=parent))
        root = tmp / "root"
        try:
            cmd = [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                "--components=main",
                suite,
                str(root),
            ]
            if mirror:
                cmd.append(mirror)
            emit(BuildEvent("step", tag, f"debootstrap {suite} with {', '.join(PACKAGES)}", 1, 3))
            try:
                _run_streaming(cmd, emit, "debootstrap")
            finally:
                _unmount_below(root)
            emit(BuildEvent("step", tag, "slimming the root (no caches, docs, apt lists)", 2, 3))
            _finish_root(root)
            tarball = tmp / "rootfs.tar"
            _run_streaming(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tarball), "."],
                emit,
                "packing the root",
            )
            emit(BuildEvent("step", tag, f"docker import as {tag}", 3, 3))
            repository, image_tag = imageref.split(tag)
            changes = [*IMPORT_CHANGES, f"LABEL {LABEL_VERSION}={__version__}"]
            try:
                with tarball.open("rb") as handle:
                    client.import_image(src=handle, repository=repository, tag=image_tag, changes=changes)
            except Exception as exc:  # an engine too old for LABEL in changes: import without it
                if "LABEL" not in str(exc):
                    raise ContestkitError(f"docker import of the bootstrapped root failed: {exc}.") from exc
                with tarball.open("rb") as handle:
                    client.import_image(src=handle, repository=repository, tag=image_tag, changes=list(IMPORT_CHANGES))
            if not inspect_image(client, tag):
                raise ContestkitError(f"docker import reported success but {tag} is not there: check `docker images`.")
        finally:
            _unmount_below(root)
            shutil.rmtree(tmp, ignore_errors=True)
        emit(BuildEvent("done", tag, f"{tag} bootstrapped in {time.monotonic() - started:.0f}s"))
        return tag
