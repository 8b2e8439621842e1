"""The remote-env image with the game ROMs inside, for clusters (``contestkit images build remote-env --with-roms``).

Why: with Docker the ROM imported on the host is bind-mounted into the remote-env container; a
Kubernetes pod runs on another node, where no such folder exists. So the ROMs imported on this
machine are imported into a derived image at build time, by the emulator package's own importer
(``contestkit.env.roms.import_roms``, the one ``contestkit roms import`` uses), and the image is pushed
to the contest's private registry.

Licensing: the Sonic ROMs are SEGA's (sold on Steam); an image holding them must stay private to the
host's cluster (the evaluator's pull account only), and each ROM must be one the host may use.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

from contestkit.errors import UsageError

ROMS_TAG_SUFFIX = "-roms"
ROMS_LABEL = "org.contestkit.env.roms"


def roms_tag(base_ref: str) -> str:
    """``contestkit/remote-env:0.1.0`` -> ``contestkit/remote-env:0.1.0-roms``."""
    return base_ref + ROMS_TAG_SUFFIX


def host_roms(games: Iterable[str] | None = None) -> dict[str, Path]:
    """The ROM of each game imported on this machine (all contest games, or the ones named)."""
    from contestkit.env.games import CONTEST_GAMES, contest_name, rom_path

    wanted = [contest_name(g) for g in games] if games else list(CONTEST_GAMES)
    found = {game: path for game in wanted if (path := rom_path(game)) is not None}
    missing = [game for game in wanted if game not in found]
    if games and missing:
        raise UsageError(
            f"No ROM of {', '.join(missing)} is imported on this machine; "
            "import it first (`contestkit roms import PATH`)."
        )
    if not found:
        raise UsageError(
            "No contest ROM is imported on this machine; import them first (`contestkit roms import PATH`)."
        )
    return found


def build_context(base_ref: str, roms: dict[str, Path]) -> bytes:
    """A tar build context: the base image, the ROM files, and one RUN that imports them."""
    dockerfile = (
        f"FROM {base_ref}\n"
        "COPY roms/ /tmp/contestkit-roms/\n"
        "RUN python -c \"from contestkit.env.roms import import_roms; import_roms('/tmp/contestkit-roms')\" "
        "&& rm -rf /tmp/contestkit-roms\n"
        f'LABEL {ROMS_LABEL}="{",".join(sorted(roms))}"\n'
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for game, path in sorted(roms.items()):
            tar.add(str(path), arcname=f"roms/{game}{path.suffix}")
    return buffer.getvalue()


def build_remote_env_with_roms(games: Iterable[str] | None = None, on_event: object = None) -> tuple[str, list[str]]:
    """Build the private remote-env image with this machine's ROMs; returns its tag and the games in it."""
    from contestkit.containers import dockerengine, images

    roms = host_roms(games)
    api = dockerengine.connect()
    try:
        base = images.ensure_image("remote-env", on_event, api=api)  # type: ignore[arg-type]
        tag = roms_tag(base)
        context = build_context(base, roms)
        images.stream_build(
            api,
            tag,
            on_event,
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            rm=True,  # type: ignore[arg-type]
        )
    finally:
        api.close()
    return tag, sorted(roms)
