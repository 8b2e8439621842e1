"""Eval says what it evaluates: the runtime, the image and its digest or the code and its commit,
and never silently an image older than the project's files that go into it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from contestkit.runs import provenance
from tests.support.paths import GAME, STATE


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def test_stale_files_are_the_image_files_newer_than_the_build(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nADD . /app/\n")
    (tmp_path / ".dockerignore").write_text("# not shipped\nresults/\nnotes.txt\n")
    for rel in ("agent/main.py", "agent/ppo.py", "pretrained/ppo.pt", "results/r1/summary.json", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    built = time.time() - 100
    for path in tmp_path.rglob("*"):
        os.utime(path, (built - 50, built - 50))
    for rel in ("agent/ppo.py", "pretrained/ppo.pt", "results/r1/summary.json", "notes.txt"):
        os.utime(tmp_path / rel, (built + 10, built + 10))
    attrs = {"Created": _iso(built - 1000), "Metadata": {"LastTagTime": _iso(built)}}
    assert provenance.built_at(attrs) == pytest.approx(built, abs=1e-3)  # the later of creation and tagging
    # Ignored files (results, notes) never make the image stale; the checkpoint does.
    assert provenance.stale_files(tmp_path, attrs) == ["agent/ppo.py", "pretrained/ppo.pt"]
    assert provenance.stale_files(tmp_path, {"Created": "0001-01-01T00:00:00Z"}) == []  # unknown: no claim
    many = [f"f{i}.py" for i in range(8)]
    assert provenance.name_files(many) == "f0.py, f1.py, f2.py, f3.py, f4.py and 3 more"


@pytest.mark.docker
def test_eval_names_the_image_and_does_not_run_a_stale_one(
    tmp_path: Path, cli, docker_api, toolkit_images, remove_images
) -> None:
    name = f"ck-test-prov-{uuid.uuid4().hex[:8]}"
    assert cli("new", name, "--template", "random", cwd=tmp_path).returncode == 0
    project = tmp_path / name
    build = cli("build", "--json", cwd=project, timeout=600)
    assert build.returncode == 0, build.stderr
    tags = json.loads(build.stdout)["tags"]
    try:
        head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True)
        commit = head.stdout.strip()
        assert tags[0] == f"{name}:{commit[:7]}"  # an untagged build carries its commit
        image_id = docker_api.inspect_image(f"{name}:latest")["Id"]

        fresh = cli("eval", GAME, STATE, "--timestep-limit", "200", "--results-dir", str(tmp_path / "d"), "-q",
                    cwd=project, timeout=600)  # fmt: skip
        assert fresh.returncode == 0, fresh.stderr
        first = fresh.stderr.splitlines()[0]
        assert first.startswith(f"Evaluating with docker: image {name}:latest ({image_id[:19]})"), first
        assert f"commit {commit[:7]}" in first and "-dirty" not in first
        source = json.loads((tmp_path / "d" / "summary.json").read_text())["source"]
        assert source["runtime"] == "docker" and source["image_id"] == image_id
        assert source["git_commit"] == commit and source["git_dirty"] is False

        main = project / "agent" / "main.py"
        main.write_text(main.read_text() + "\n# changed after the build\n")
        later = time.time() + 5  # an mtime after the build's tag time, on any filesystem's clock, without a sleep
        os.utime(main, (later, later))
        changed = cli("eval", GAME, STATE, "--timestep-limit", "200", "--results-dir", str(tmp_path / "l"), "-q",
                      cwd=project, timeout=600)  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        said = " ".join(changed.stderr.split())
        assert "agent/main.py changed since `contestkit build` made" in said and "local processes" in said
        source = json.loads((tmp_path / "l" / "summary.json").read_text())["source"]
        assert source["runtime"] == "local" and source["git_commit"] == commit and source["git_dirty"] is True

        old = cli("eval", GAME, STATE, "--runtime", "docker", "--timestep-limit", "200",
                  "--results-dir", str(tmp_path / "o"), "-q", cwd=project, timeout=600)  # fmt: skip
        assert old.returncode == 0, old.stderr
        assert "evaluates that older image" in " ".join(old.stderr.split())
        assert json.loads((tmp_path / "o" / "summary.json").read_text())["source"]["image_id"] == image_id
    finally:
        remove_images(docker_api, tags)
