"""``contestkit images build remote-env --with-roms``: the ROMs reach a cluster inside a private image."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from contestkit.containers import rom_image
from contestkit.env.games import rom_path


def test_the_build_context_imports_the_host_roms() -> None:
    roms = rom_image.host_roms(["Airstriker-Genesis"])  # its ROM ships with stable-retro
    assert roms == {"Airstriker-Genesis": rom_path("Airstriker-Genesis")}
    context = rom_image.build_context("contestkit/remote-env:0.1.0", roms)
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        names = tar.getnames()
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert f"roms/Airstriker-Genesis{roms['Airstriker-Genesis'].suffix}" in names
    assert dockerfile.startswith("FROM contestkit/remote-env:0.1.0\n")
    assert "import_roms('/tmp/contestkit-roms')" in dockerfile and "rm -rf /tmp/contestkit-roms" in dockerfile


def test_a_rom_that_is_not_imported_is_named() -> None:
    from contestkit.errors import UsageError

    if rom_path("SonicTheHedgehog-Genesis") is not None:
        pytest.skip("this machine has the Sonic ROM imported")
    with pytest.raises(UsageError, match="No ROM of SonicTheHedgehog-Genesis is imported"):
        rom_image.host_roms(["SonicTheHedgehog-Genesis"])


@pytest.mark.docker
@pytest.mark.slow
def test_with_roms_builds_a_private_remote_env(cli: Any, docker_api: Any, run_container: Any) -> None:
    done = cli("images", "build", "remote-env", "--with-roms", "--json", timeout=1200)
    assert done.returncode == 0, done.stderr
    import json

    document = json.loads(done.stdout)
    (tag,) = document["built"]
    try:
        assert tag.endswith("-roms") and "Airstriker-Genesis" in document["games"]
        labels = docker_api.inspect_image(tag)["Config"]["Labels"]
        assert "Airstriker-Genesis" in labels[rom_image.ROMS_LABEL].split(",")
        status, output = run_container(
            docker_api, tag, ["--game", "Airstriker-Genesis", "--help"]
        )  # the env program is still the entry point
        assert status == 0, output
    finally:
        docker_api.remove_image(tag)
