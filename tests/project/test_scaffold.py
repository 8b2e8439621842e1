"""`contestkit new`: names, registries, templates, and never overwriting anything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contestkit.containers.imageref import name_problem, validate_name, validate_registry
from contestkit.errors import ContestkitError, UsageError
from contestkit.projects import scaffold
from contestkit.projects.scaffold import create_project

ROOT = Path(__file__).resolve().parents[2]
BASES = {
    "pytorch": "contestkit/agent:pytorch",
    "tf": "contestkit/agent:tensorflow",
    "random": "contestkit/agent:cpu",
}
REGISTRY = "registry.example.com/team"
PROJECT_FILES = (
    "Dockerfile", "contestkit.yaml", "requirements.txt", "requirements-dev.txt", ".dockerignore",
    ".gitignore", "README.md", "pytest.ini", "agent/__init__.py", "agent/main.py", "agent/__main__.py",
    "tests/test_agent.py",
)  # fmt: skip


@pytest.mark.parametrize("name", ["my-agent", "a", "0day", "ppo_v2", "agent.v1", "a__b", "a---b", "x" * 128])
def test_valid_names_are_accepted(name: str) -> None:
    assert name_problem(name) is None
    assert validate_name(name, "NAME") == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("My-Agent", "uppercase.*'my-agent'"),
        ("team/agent", "--registry"),
        ("agent:v1", "tags"),
        ("my agent", "' '.*only lowercase letters, digits.*'my-agent'"),
        ("ägent", "'ä'"),
        ("-agent", "start and end"),
        ("agent_", "start and end"),
        ("a..b", "in a row"),
        ("a._b", "in a row"),
        ("a___b", "in a row"),
        ("x" * 129, "at most 128"),
    ],
)
def test_invalid_names_are_refused_with_the_rule_they_broke(name: str, rule: str, tmp_path: Path) -> None:
    problem = name_problem(name)
    assert problem is not None and re.search(rule, problem), problem
    with pytest.raises(UsageError, match="invalid project name") as info:
        create_project(name, directory=tmp_path)
    assert str(info.value).endswith(".")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("registry.example.com", "registry.example.com"),
        ("registry.example.com:5000/team", "registry.example.com:5000/team"),
        ("localhost:5000/a/b/", "localhost:5000/a/b"),
    ],
)
def test_valid_registries(registry: str, expected: str) -> None:
    assert validate_registry(registry) == expected


@pytest.mark.parametrize(
    ("registry", "rule"),
    [
        ("https://registry.example.com/team", "without https://"),
        ("registry.example.com:http/team", "port"),
        ("bad_host!/team", "not a host name"),
        ("registry.example.com/Team", "uppercase"),
        ("", "empty"),
    ],
)
def test_invalid_registries_are_refused(registry: str, rule: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=rule):
        create_project("agent", registry=registry, directory=tmp_path)
    assert not (tmp_path / "agent").exists()


def test_templates_are_found_in_the_checkout() -> None:
    root = scaffold.templates_root()
    for directory in scaffold.TEMPLATES.values():
        assert (root / directory / "contestkit.yaml").is_file()
    assert scaffold.resolve_template("torch") == "pytorch"
    assert scaffold.resolve_template("TensorFlow") == "tf"
    with pytest.raises(UsageError, match="choose one of pytorch, tf, random"):
        scaffold.resolve_template("jax")


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest))
    return out


@pytest.mark.parametrize("template", ["pytorch", "tf", "random"])
def test_a_project_is_complete_and_filled_in(template: str, tmp_path: Path) -> None:
    project = create_project("my-agent", template=template, registry="registry.example.com/team", directory=tmp_path)
    path = tmp_path / "my-agent"
    assert project.path == path and project.image == "registry.example.com/team/my-agent"
    for name in PROJECT_FILES:
        assert (path / name).is_file(), name
    assert not list(path.rglob("__pycache__"))
    for file in path.rglob("*"):
        if file.is_file() and ".git" not in file.relative_to(path).parts:  # the first commit's objects: binary
            assert "{{" not in file.read_text(), f"placeholder left in {file}"

    config = yaml.safe_load((path / "contestkit.yaml").read_text())
    assert set(config) == {"name", "registry", "entry", "base_image"}
    assert config["name"] == "my-agent" and config["registry"] == "registry.example.com/team"
    assert config["base_image"] == BASES[template]
    assert config["entry"] == "agent.main:main"

    steps = _dockerfile_instructions(path / "Dockerfile")
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    assert ("ARG", f"BASE_IMAGE={BASES[template]}") in steps
    # The code goes in the last layer: nothing that makes a layer comes after ADD.
    layer_steps = [(w, r) for w, r in steps if w in ("ADD", "COPY", "RUN")]
    assert layer_steps[-1] == ("ADD", ". /root/compo/")
    assert "out/" in (path / ".dockerignore").read_text()
    assert all(re.match(r"^[A-Za-z0-9_.-]+(\[.*\])?==\S+$", line) for line in _requirements(path))
    readme = (path / "README.md").read_text()
    for words in (
        "contestkit eval",
        "contestkit build",
        "contestkit submit",
        "registry.example.com/team/my-agent",
    ):
        assert words in readme


def _requirements(path: Path) -> list[str]:
    lines = (path / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_the_project_file_loads_with_contestkits_own_loader(tmp_path: Path) -> None:
    from contestkit.projects.project import find_project

    create_project("loader-check", template="random", directory=tmp_path)
    project = find_project(tmp_path / "loader-check")
    assert project is not None
    assert project.name == "loader-check" and project.registry is None
    assert project.entry == "agent.main:main"
    assert project.image_ref() == "loader-check:latest"


def test_without_a_registry_the_file_says_null(tmp_path: Path) -> None:
    create_project("agent", template="pytorch", directory=tmp_path)
    assert yaml.safe_load((tmp_path / "agent" / "contestkit.yaml").read_text())["registry"] is None


def test_existing_directories_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContestkitError, match="already exists.*never overwrites"):
        create_project("empty", directory=tmp_path)
    assert list((tmp_path / "empty").iterdir()) == []

    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "agent.py").write_text("precious")
    with pytest.raises(ContestkitError, match="already exists"):
        create_project("mine", directory=tmp_path)
    assert (keep / "agent.py").read_text() == "precious" and len(list(keep.iterdir())) == 1

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ContestkitError, match=r"already exists \(file\)"):
        create_project("afile", directory=tmp_path)


def test_dir_is_the_parent_and_is_created(tmp_path: Path) -> None:
    project = create_project("agent", template="random", directory=tmp_path / "a" / "b")
    assert project.path == tmp_path / "a" / "b" / "agent" and (project.path / "Dockerfile").is_file()


def test_a_failure_half_way_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_copy(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scaffold.shutil, "copytree", broken_copy)
    with pytest.raises(ContestkitError, match="cannot write the project"):
        create_project("agent", directory=tmp_path)
    assert not (tmp_path / "agent").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contestkit", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_creates_a_project_and_says_what_next(tmp_path: Path) -> None:
    proc = _cli("new", "cli-agent", "--template", "tf", "--registry", "reg.example.com/team", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Created cli-agent/" in proc.stdout
    # Pasteable: the command stays on one line even on a narrow terminal or a pipe.
    assert "  contestkit eval Airstriker-Genesis Level1 --runtime local --timestep-limit 6000\n" in proc.stdout
    assert "reg.example.com/team/cli-agent" in proc.stdout
    assert (tmp_path / "cli-agent" / "agent" / "ppo.py").is_file()


def test_cli_refuses_bad_names_and_existing_dirs_with_one_sentence(tmp_path: Path) -> None:
    proc = _cli("new", "Bad_Name", cwd=tmp_path)
    assert proc.returncode == 2
    assert "uppercase" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "taken").mkdir()
    proc = _cli("new", "taken", "--dir", str(tmp_path), cwd=ROOT)
    assert proc.returncode == 2  # a usage error: the command cannot run as typed (contestkit.errors)
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_help_and_registry_errors_print_cleanly(tmp_path: Path) -> None:
    # Square brackets in help or messages would be taken as console markup and crash the CLI.
    proc = _cli("new", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--registry" in proc.stdout, proc.stderr
    for args in (("team/agent",), ("agent", "--registry", "https://registry.example.com/team")):
        proc = _cli("new", *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "error: invalid" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_templates_ship_inside_the_wheel(tmp_path: Path) -> None:
    """A pip-installed contestkit (no source checkout) still has every template."""
    import zipfile

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("contestkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("agent-pytorch", "agent-tf", "agent-random"):
        assert f"contestkit/templates/{template}/Dockerfile" in names
        assert f"contestkit/templates/{template}/contestkit.yaml" in names


def test_new_makes_a_git_repository_with_a_first_commit(tmp_path: Path) -> None:
    # No git identity at all (a fresh machine): the first commit is still made.
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": __import__("os").environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
           "PYTHONPATH": str(ROOT), "COLUMNS": "200"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "contestkit", "new", "gitted", "--template", "random"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "gitted"
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert head.returncode == 0 and head.stdout.strip() in proc.stdout
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""  # every file of the project is in the first commit
    tracked = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True).stdout
    assert "agent/main.py" in tracked and "Dockerfile" in tracked


def test_new_inside_a_repository_leaves_it_to_that_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
    project = create_project("inner", template="random", directory=tmp_path)
    assert project.git_commit is None and not (project.path / ".git").exists()


@pytest.mark.parametrize("template", sorted(scaffold.TEMPLATES))
def test_template_readmes_carry_no_measured_figures_only_a_pointer(template: str, tmp_path: Path) -> None:
    readme = (create_project("figures", template=template, directory=tmp_path).path / "README.md").read_text()
    # Dated figures go stale in every project made from the template; the main docs keep them current.
    assert "## Measured" not in readme and not re.search(r"\b20\d\d-\d\d-\d\d\b", readme)
    if template != "random":
        assert "Do the agents learn?" in readme and "tensorboard --logdir results/" in readme
