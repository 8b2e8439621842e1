"""``contestkit build``: tags, labels, .dockerignore, fast rebuilds, readable failures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contestkit import __version__
from contestkit.containers.build import base_images, build_args, build_project, default_tag, dockerfile_args, git_state
from contestkit.containers.imageref import sanitize_name, validate_name
from contestkit.containers.images import BuildEvent, BuildFailed, ensure_image
from contestkit.errors import ContestkitError
from contestkit.projects.project import find_project, require_project

DOCKERFILE = """\
ARG BASE_IMAGE=contestkit/agent:cpu
FROM ${BASE_IMAGE}
ADD . /root/compo/
"""

AGENT = """\
import gym_remote.client as grc

print("agent version 1")
"""


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def make_project(root: Path, name: str, registry: str | None, dockerfile: str = DOCKERFILE) -> Path:
    root.mkdir(parents=True)
    reg = f"registry: {registry}\n" if registry else "registry: null\n"
    (root / "contestkit.yaml").write_text(f"name: {name}\n{reg}entry: agent.py\n")
    (root / "Dockerfile").write_text(dockerfile)
    (root / "agent.py").write_text(AGENT)
    (root / ".dockerignore").write_text("secret.txt\nresults/\n")
    (root / "secret.txt").write_text("do not ship me")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "agent")
    return root


@pytest.fixture
def isolated_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own user config (registry, credentials) out of these tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in ("CONTESTKIT_REGISTRY", "CONTESTKIT_BASE_IMAGE", "CONTESTKIT_BUILD_ARGS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def built_refs(docker_api: Any, remove_images) -> Iterator[list[str]]:
    """Collects image tags a test makes, and removes them afterwards."""
    refs: list[str] = []
    yield refs
    remove_images(docker_api, refs)


# ------------------------------------------------------------------ no Docker needed


def test_dockerfile_parsing() -> None:
    text = "ARG BASE_IMAGE=contestkit/agent:cpu\nARG X\nFROM ${BASE_IMAGE} AS build\nFROM build\nFROM \\\n  scratch\n"
    assert dockerfile_args(text) == {"BASE_IMAGE", "X"}
    assert base_images(text, {}) == ["contestkit/agent:cpu"]
    assert base_images(text, {"BASE_IMAGE": "contestkit/agent:pytorch"}) == ["contestkit/agent:pytorch"]
    assert base_images("FROM --platform=linux/amd64 $IMG\n", {}) == [""]
    assert base_images('ARG IMG="python:3.11-slim"\nFROM $IMG\n', {}) == ["python:3.11-slim"]


def test_base_image_chosen_wins_else_the_dockerfile_default(tmp_path: Path, isolated_user_config: None) -> None:
    from contestkit.projects.config import load_config

    pytorch = "ARG BASE_IMAGE=contestkit/agent:pytorch\nFROM ${BASE_IMAGE}\n"
    (tmp_path / "contestkit.yaml").write_text("name: a\n")  # the base_image line deleted
    assert "BASE_IMAGE" not in build_args(pytorch, load_config(tmp_path, env={}))
    (tmp_path / "contestkit.yaml").write_text("name: a\nbase_image: contestkit/agent:tensorflow\n")
    assert build_args(pytorch, load_config(tmp_path, env={}))["BASE_IMAGE"] == "contestkit/agent:tensorflow"
    chosen = load_config(tmp_path, env={"CONTESTKIT_BASE_IMAGE": "python:bookworm"})
    assert build_args(pytorch, chosen)["BASE_IMAGE"] == "python:bookworm"
    (tmp_path / "contestkit.yaml").write_text("name: a\n")
    no_default = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"  # nothing to fall back on: the config default
    assert build_args(no_default, load_config(tmp_path, env={}))["BASE_IMAGE"] == "contestkit/agent:cpu"


def test_project_discovery_and_names(tmp_path: Path, isolated_user_config: None) -> None:
    assert find_project(tmp_path) is None
    with pytest.raises(ContestkitError, match="contestkit new NAME"):
        require_project(tmp_path)
    (tmp_path / "contestkit.yaml").write_text("registry: r.example.com/team\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    project = require_project(sub)
    assert project.root == tmp_path.resolve()
    assert project.name == sanitize_name(tmp_path.name)  # defaults to the directory name
    assert project.image_ref("v1") == f"r.example.com/team/{project.name}:v1"
    assert sanitize_name("My Agent!!v2") == "my-agent-v2"
    with pytest.raises(ContestkitError, match="not a valid image name"):
        validate_name("Bad_Name-", "contestkit.yaml")
    (tmp_path / "contestkit.yaml").write_text("name: Bad Name\n")
    with pytest.raises(ContestkitError, match="not a valid image name"):
        find_project(tmp_path)
    # The registry is held to the rules `contestkit new --registry` applies, naming its source.
    (tmp_path / "contestkit.yaml").write_text("registry: https://Reg.io/Team/\n")
    with pytest.raises(ContestkitError, match=r"contestkit.yaml.*invalid registry .*without https://"):
        find_project(tmp_path)


def test_git_state_and_default_tag(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_state(plain).commit is None
    assert default_tag(plain) == "latest"
    root = make_project(tmp_path / "proj", "x", None)
    state = git_state(root)
    assert state.commit == git(root, "rev-parse", "HEAD").strip()
    assert state.dirty is False
    assert default_tag(root) == state.short
    (root / "agent.py").write_text(AGENT + "# changed\n")
    assert git_state(root).dirty is True
    assert default_tag(root) == f"{state.short}-dirty"  # a dirty build never carries the clean commit's name


def test_missing_dockerfile_is_a_clear_error(tmp_path: Path, isolated_user_config: None) -> None:
    (tmp_path / "contestkit.yaml").write_text("name: agent\ndockerfile: agent.docker\n")
    with pytest.raises(ContestkitError, match=r"agent\.docker does not exist"):
        build_project(require_project(tmp_path))


# ------------------------------------------------------------------ real Docker


@pytest.mark.docker
@pytest.mark.slow
def test_build_tags_labels_dockerignore_and_fast_rebuild(
    tmp_path: Path,
    docker_api: Any,
    toolkit_images: dict[str, str],
    built_refs: list[str],
    isolated_user_config: None,
    run_container,
) -> None:
    root = make_project(tmp_path / "agent", "ck-test-agent", "registry.example.com/team")
    project = require_project(root)
    events: list[BuildEvent] = []
    result = build_project(project, "v1", on_event=events.append, api=docker_api)
    built_refs.extend(result.tags)
    assert result.tags == [
        "registry.example.com/team/ck-test-agent:v1",
        "ck-test-agent:v1",
        "ck-test-agent:latest",
    ]
    ids = {docker_api.inspect_image(ref)["Id"] for ref in result.tags}
    assert ids == {result.image_id} or len(ids) == 1
    labels = docker_api.inspect_image("ck-test-agent:latest")["Config"]["Labels"]
    assert labels["org.contestkit.version"] == __version__
    assert labels["org.contestkit.git-commit"] == git(root, "rev-parse", "HEAD").strip()
    assert labels["org.contestkit.git-dirty"] == "false"

    status, output = run_container(
        docker_api, "ck-test-agent:latest", ["sh", "-c", "ls /root/compo; test ! -e /root/compo/secret.txt"]
    )
    assert status == 0, f".dockerignore was not honoured: {output}"
    assert "agent.py" in output and "contestkit.yaml" in output

    # one-line change: only the code layer rebuilds (how fast: bench/images.py times it)
    (root / "agent.py").write_text(AGENT.replace("version 1", "version 2"))
    events.clear()
    ensure_image("cpu", api=docker_api)  # others may be editing contestkit: keep the base current
    again = build_project(project, "v2", on_event=events.append, api=docker_api)
    built_refs.extend(again.tags)
    # every step built was the project's own: no base image was built along the way
    assert {e.image for e in events if e.kind == "step"} == {"registry.example.com/team/ck-test-agent:v2"}, events
    assert again.labels["org.contestkit.git-dirty"] == "true"
    status, output = run_container(docker_api, "ck-test-agent:v2", ["python", "/root/compo/agent.py"])
    assert status == 0 and "agent version 2" in output, output


@pytest.mark.docker
def test_no_registry_tags_name_only_and_default_tag_is_sha(
    tmp_path: Path,
    docker_api: Any,
    toolkit_images: dict[str, str],
    built_refs: list[str],
    isolated_user_config: None,
) -> None:
    root = make_project(tmp_path / "solo", "ck-test-solo", None)
    result = build_project(require_project(root), api=docker_api)
    built_refs.extend(result.tags)
    short = git(root, "rev-parse", "--short", "HEAD").strip()
    assert result.tags == [f"ck-test-solo:{short}", "ck-test-solo:latest"]
    assert result.registry is None
    assert any("registry" in note and "push" in note for note in result.notes)


@pytest.mark.docker
def test_failed_build_shows_step_and_output_not_traceback(
    tmp_path: Path,
    docker_api: Any,
    toolkit_images: dict[str, str],
    built_refs: list[str],
    isolated_user_config: None,
) -> None:
    dockerfile = DOCKERFILE + "RUN echo 'compiling the policy' && python -c 'import no_such_module_xyz'\n"
    root = make_project(tmp_path / "broken", "ck-test-broken", None, dockerfile)
    with pytest.raises(BuildFailed) as err:
        build_project(require_project(root), "v1", api=docker_api)
    assert err.value.step == 4 and err.value.total >= 4
    assert "no_such_module_xyz" in str(err.value)
    assert "compiling the policy" in str(err.value)

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "build", "v1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 1
    ours, _, step_output = proc.stderr.partition("--- output of that step ---")
    assert "Traceback" not in ours and "Traceback" not in proc.stdout  # no contestkit traceback
    assert "contestkit/containers/build.py" not in proc.stderr
    assert "error:" in ours and "failed at step 4/" in ours
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in step_output  # the step's own
    assert "\x1b[91m" not in step_output


@pytest.mark.docker
def test_cli_build_json(
    tmp_path: Path,
    docker_api: Any,
    toolkit_images: dict[str, str],
    built_refs: list[str],
) -> None:
    import json

    root = make_project(tmp_path / "cli", "ck-test-cli", "registry.example.com/team")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "build", "t1", "--json"],
        cwd=root / "..",
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2 and "No contestkit.yaml" in proc.stderr  # not in the project: a usage error
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "build", "t1", "--json", "--dir", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    built_refs.extend(doc["tags"])
    assert doc["tags"][0] == "registry.example.com/team/ck-test-cli:t1"
    assert doc["labels"]["org.contestkit.git-dirty"] == "false"
