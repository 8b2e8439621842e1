"""Toolkit images: context assembly (no Docker) and the real images (``docker`` marker).

The docker tests build only what eval needs (remote-env and agent:cpu), once: later runs reuse
them through the content-hash label unless the package code changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

import contestkit
from contestkit import __version__
from contestkit.containers.images import (
    BOOTSTRAP_IMAGE,
    DEFAULT_TORCH_PIP_ARGS,
    IMAGES,
    LABEL_HASH,
    LABEL_VERSION,
    BuildEvent,
    BuildFailed,
    _plan,
    build_context,
    ca_bundle_bytes,
    ensure_image,
    image_spec,
    list_images,
    package_wheel,
    resolve_python_image,
    resolve_python_image_quiet,
    stream_build,
)
from contestkit.errors import ContestkitError, NotFoundError
from contestkit.projects.config import load_config

REPO = Path(__file__).resolve().parents[2]


def cfg(tmp_path: Path, **env: str) -> Any:
    base = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    base.update(env)
    return load_config(tmp_path, env=base)


# ------------------------------------------------------------------ no Docker needed


def test_image_names_and_aliases() -> None:
    assert image_spec("cpu").ref == "contestkit/agent:cpu"
    assert image_spec("contestkit/agent:cpu") is IMAGES["cpu"]
    assert image_spec("agent:pytorch").ref == "contestkit/agent:pytorch"
    assert image_spec("tf") is IMAGES["tensorflow"]
    assert image_spec("remote-env").ref == f"contestkit/remote-env:{__version__}"
    with pytest.raises(NotFoundError, match="choose from"):
        image_spec("agent:cuda")


def test_package_wheel_is_deterministic_and_complete() -> None:
    name, data = package_wheel()
    assert name == f"contestkit-{__version__}-py3-none-any.whl"
    assert package_wheel()[1] == data  # byte-identical: Docker's cache holds for unchanged code
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"contestkit-{__version__}.dist-info/METADATA").decode()
        wheel_images = zf.read("contestkit/containers/images.py")
        assert "contestkit/dockerfiles/agent-cpu.Dockerfile" in names
        assert "gym_remote/client.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        record = zf.read(f"contestkit-{__version__}.dist-info/RECORD").decode()
    assert wheel_images == (Path(contestkit.__file__).parent / "containers" / "images.py").read_bytes()
    assert "Requires-Dist: stable-retro" in meta and "Requires-Dist: numpy" in meta
    assert "extra ==" not in meta
    assert "contestkit/containers/images.py,sha256=" in record


def test_the_context_hash_depends_on_the_content_not_on_the_install_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 item 3: a checkout reaches ``contestkit/templates`` through a symlink, a regular
    install holds the same files as a directory; both must give the same wheel and image hash."""
    import shutil

    from contestkit.containers import images

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "templates")
    layouts = {}
    for layout in ("checkout", "installed"):
        root = tmp_path / layout
        shutil.copytree(REPO / "contestkit", root / "contestkit", ignore=ignore)
        shutil.copytree(REPO / "gym_remote", root / "gym_remote", ignore=ignore)
        layouts[layout] = [root / "contestkit", root / "gym_remote"]
    shutil.copytree(REPO / "templates", tmp_path / "checkout" / "templates")
    (tmp_path / "checkout" / "contestkit" / "templates").symlink_to("../templates")
    shutil.copytree(REPO / "templates", tmp_path / "installed" / "contestkit" / "templates")
    (tmp_path / "checkout" / "contestkit" / "data" / "loop").symlink_to("..")  # a link loop is walked once

    wheels = {layout: package_wheel(package_dirs=dirs)[1] for layout, dirs in layouts.items()}
    with zipfile.ZipFile(io.BytesIO(wheels["checkout"])) as zf:
        assert "contestkit/templates/agent-random/Dockerfile" in zf.namelist()
        assert not [n for n in zf.namelist() if "/loop/" in n]
    (tmp_path / "checkout" / "contestkit" / "data" / "loop").unlink()
    wheels["checkout"] = package_wheel(package_dirs=layouts["checkout"])[1]
    assert wheels["checkout"] == wheels["installed"]

    digests = {}
    for layout, dirs in layouts.items():
        monkeypatch.setattr(images, "_package_dirs", lambda dirs=dirs: dirs)  # the package as found there
        context = build_context(IMAGES["remote-env"], cfg(tmp_path), "contestkit/python:bookworm")
        digests[layout] = context.compute_digest("sha256:parent")
    assert digests["checkout"] == digests["installed"]


def test_ca_bundle_is_defaults_plus_extra(tmp_path: Path) -> None:
    extra = tmp_path / "corp.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nCORPORATE-ROOT\n-----END CERTIFICATE-----\n")
    plain = ca_bundle_bytes(cfg(tmp_path))
    combined = ca_bundle_bytes(cfg(tmp_path, CONTESTKIT_CA_BUNDLE=str(extra)))
    assert b"CORPORATE-ROOT" not in plain and b"BEGIN CERTIFICATE" in plain
    assert combined.startswith(plain) and b"CORPORATE-ROOT" in combined


def test_ca_bundle_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ContestkitError, match=r"CONTESTKIT_CA_BUNDLE\) does not exist"):
        ca_bundle_bytes(cfg(tmp_path, CONTESTKIT_CA_BUNDLE=str(tmp_path / "missing.pem")))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ContestkitError, match="holds no PEM certificate"):
        ca_bundle_bytes(cfg(tmp_path, PIP_CERT=str(junk)))


def test_context_contents_and_digest(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    ctx = build_context(IMAGES["cpu"], config, "contestkit/python:bookworm")
    assert ctx.buildargs == {"PARENT_IMAGE": "contestkit/python:bookworm"}
    reqs = ctx.files["requirements.txt"].decode().split()
    assert sorted(r.split(">")[0] for r in reqs) == ["gymnasium", "numpy"]  # the agent stays small
    assert f"dist/contestkit-{__version__}-py3-none-any.whl" in ctx.files
    assert "ca/etc/contestkit/ca-bundle.crt" in ctx.files
    remote = build_context(IMAGES["remote-env"], config, "contestkit/python:bookworm")
    assert b"stable-retro" in remote.files["requirements.txt"]

    digest = ctx.compute_digest("sha256:parent-a")
    assert (
        build_context(IMAGES["cpu"], config, "contestkit/python:bookworm").compute_digest("sha256:parent-a") == digest
    )
    assert ctx.compute_digest("sha256:parent-b") != digest  # a new parent makes the image stale
    extra = tmp_path / "corp.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nX\n")
    other = build_context(IMAGES["cpu"], cfg(tmp_path, CONTESTKIT_CA_BUNDLE=str(extra)), "contestkit/python:bookworm")
    assert other.compute_digest("sha256:parent-a") != digest

    buffer = io.BytesIO()
    ctx.write_tar(buffer)
    with tarfile.open(fileobj=buffer) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["Dockerfile"].mtime == 0
    assert "dist" in members and members["dist"].isdir()


def test_framework_context_pins_local_cpu_wheel(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    plain = build_context(IMAGES["pytorch"], cfg(tmp_path), "contestkit/agent:cpu")
    assert plain.buildargs["FRAMEWORK_PIP_ARGS"] == DEFAULT_TORCH_PIP_ARGS
    assert "cpu" in plain.buildargs["FRAMEWORK_PIP_ARGS"]  # never a plain `torch` (CUDA, GBs)
    assert "torch.version.cuda is None" in plain.buildargs["FRAMEWORK_CHECK"]

    (wheels / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"cuda build")
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"cpu build")
    (wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"numpy")
    local = build_context(IMAGES["pytorch"], cfg(tmp_path, CONTESTKIT_WHEELS_DIR=str(wheels)), "contestkit/agent:cpu")
    assert local.buildargs["FRAMEWORK_PIP_ARGS"] == "torch==2.13.0+cpu"
    assert sorted(local.files) == [
        "Dockerfile",
        "wheels/.keep",
        "wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]
    override = cfg(tmp_path, CONTESTKIT_WHEELS_DIR=str(wheels), CONTESTKIT_TORCH_PIP_ARGS="torch==2.9.1+cpu")
    assert build_context(IMAGES["pytorch"], override, "x").buildargs["FRAMEWORK_PIP_ARGS"] == "torch==2.9.1+cpu"


# ------------------------------------------------------------------ real Docker


@pytest.mark.docker
@pytest.mark.slow
def test_ensure_image_builds_once_then_reuses(docker_api: Any, toolkit_images: dict[str, str]) -> None:
    assert toolkit_images["cpu"] == "contestkit/agent:cpu"
    events: list[BuildEvent] = []
    ref = ensure_image("contestkit/agent:cpu", events.append, api=docker_api)
    assert ref == "contestkit/agent:cpu"
    assert not [e for e in events if e.kind in ("step", "info")], events  # current: nothing built


@pytest.mark.docker
@pytest.mark.perf
def test_checking_a_current_image_takes_under_3_s(docker_api: Any, toolkit_images: dict[str, str]) -> None:
    started = time.monotonic()
    ensure_image("contestkit/agent:cpu", api=docker_api)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"checking a current image took {elapsed:.1f}s"


@pytest.mark.docker
@pytest.mark.slow
def test_agent_cpu_image_layout(docker_api: Any, toolkit_images: dict[str, str], run_container) -> None:
    attrs = docker_api.inspect_image("contestkit/agent:cpu")
    conf = attrs["Config"]
    assert conf["WorkingDir"] == "/root/compo"
    assert conf["Cmd"] == ["python", "-u", "/root/compo/agent.py"]
    assert conf["Labels"][LABEL_VERSION] == __version__
    assert len(conf["Labels"][LABEL_HASH]) == 64
    assert not conf.get("Volumes"), "a VOLUME would leave anonymous volumes behind every eval"
    assert attrs["Size"] < 400e6, f"agent:cpu grew to {attrs['Size'] / 1e6:.0f} MB"
    script = (
        "set -e; cd /root/compo; test -d tmp; test -d out; "
        "python -c 'import gym_remote.client, gym_remote.exceptions, contestkit.bridge, numpy, gymnasium'; "
        "test ! -e /root/.cache/pip; ! command -v contestkit; "
        "! python -c 'import torch' 2>/dev/null; ! python -c 'import typer' 2>/dev/null; echo layout-ok"
    )
    status, output = run_container(docker_api, "contestkit/agent:cpu", ["sh", "-c", script])
    assert status == 0 and "layout-ok" in output, output


@pytest.mark.docker
@pytest.mark.slow
def test_remote_env_image_runs_this_contestkit(docker_api: Any, toolkit_images: dict[str, str], run_container) -> None:
    ref = toolkit_images["remote-env"]
    conf = docker_api.inspect_image(ref)["Config"]
    assert conf["Entrypoint"] == ["python", "-m", "contestkit.runs.envprogram"]
    local = hashlib.sha256((Path(contestkit.__file__).parent / "runs" / "envprogram.py").read_bytes()).hexdigest()
    script = (
        "import hashlib, contestkit, pathlib, stable_retro; "
        "code = (pathlib.Path(contestkit.__file__).parent / 'runs' / 'envprogram.py').read_bytes(); "
        "print(hashlib.sha256(code).hexdigest())"
    )
    status, output = run_container(docker_api, ref, ["-c", script], entrypoint=["python"])
    assert status == 0, output
    assert output.split()[-1] == local  # the image carries this very code
    status, output = run_container(docker_api, ref, ["--help"])
    assert status == 0 and "--bridge-dir" in output, output


@pytest.mark.docker
def test_stale_when_context_changes(docker_api: Any, toolkit_images: dict[str, str], tmp_path: Path) -> None:
    config = load_config(tmp_path)
    parent = resolve_python_image_quiet(docker_api, config)
    assert parent is not None
    assert _plan(docker_api, IMAGES["cpu"], config, parent).state == "current"
    extra = tmp_path / "corp.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nX\n")
    changed = load_config(tmp_path, env={**_env(), "CONTESTKIT_CA_BUNDLE": str(extra)})
    assert _plan(docker_api, IMAGES["cpu"], changed, parent).state == "stale"


def _env() -> dict[str, str]:
    return dict(os.environ)


@pytest.mark.docker
def test_failed_step_is_reported_with_its_output(docker_api: Any, toolkit_images: dict[str, str]) -> None:
    dockerfile = b"FROM contestkit/agent:cpu\nRUN echo first-ok\nRUN echo marker-output-123 && exit 3\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buffer.seek(0)
    events: list[BuildEvent] = []
    with pytest.raises(BuildFailed) as err:
        stream_build(
            docker_api,
            "failing-test",
            events.append,
            fileobj=buffer,
            custom_context=True,
            rm=True,
            forcerm=True,
        )
    failure = err.value
    assert (failure.step, failure.total) == (3, 3)
    assert "exit 3" in failure.instruction
    assert "marker-output-123" in str(failure)
    assert "step 3/3" in str(failure) and "non-zero code: 3" in str(failure)
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3]


@pytest.mark.docker
def test_missing_python_image_says_to_bootstrap(docker_api: Any, tmp_path: Path) -> None:
    config = load_config(tmp_path, env={**_env(), "CONTESTKIT_PYTHON_IMAGE": "contestkit-test/no-such-python:0"})
    with pytest.raises(ContestkitError) as err:
        resolve_python_image(docker_api, config)
    assert "contestkit images bootstrap" in str(err.value)
    assert "contestkit-test/no-such-python:0" in str(err.value)
    assert BOOTSTRAP_IMAGE in str(err.value)


@pytest.mark.docker
def test_images_list_reports_state_size_and_version(docker_api: Any, toolkit_images: dict[str, str]) -> None:
    rows = {row.ref: row for row in list_images(docker_api)}
    cpu = rows["contestkit/agent:cpu"]
    assert cpu.state == "current" and cpu.version == __version__ and cpu.size_bytes > 50e6
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "images", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    listed = {row["image"]: row for row in doc["images"]}
    assert listed["contestkit/agent:cpu"]["state"] == "current"
    assert listed["contestkit/agent:cpu"]["toolkit_version"] == __version__
    assert listed[toolkit_images["remote-env"]]["size_mb"] > 100


def test_build_names_and_all_together_is_one_sentence(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "contestkit", "images", "build", "cpu", "--all"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: Pass image names (cpu) or --all, not both."
