"""``contestkit doctor``: structured checks, each failure with a fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contestkit.doctor import FAIL, OK, SKIP, WARN, docker_logged_in, failed, run_checks


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated user config and docker CLI config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-cli"))
    for var in ("CONTESTKIT_REGISTRY", "CONTESTKIT_PYTHON_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


def test_no_engine_fails_with_fix_and_skips_dependents(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    results = by_name(run_checks(clean_env))
    engine = results["docker engine"]
    assert engine.status == FAIL
    assert "no-docker.sock" in engine.summary
    assert engine.fix and "dockerd" in engine.fix
    assert results["nvidia runtime"].status == SKIP
    assert results["images"].status == SKIP
    assert results["config"].status == OK  # independent checks still ran
    assert failed(list(results.values()))


def test_bridge_wakeup_is_measured_and_advice_follows_the_figures(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")  # not needed for this check
    check = by_name(run_checks(clean_env))["bridge wake-up"]
    cross, same = check.details["cross_cpu_us"], check.details["same_cpu_us"]
    assert 0 < same and 0 < cross, check.details
    assert f"{cross} us across CPUs, {same} us on one CPU" in check.summary
    if check.details["cpus"] > 1 and cross - same > 20:
        assert check.status == WARN and "--cpuset" in (check.fix or "")
    else:
        assert check.status == OK and check.fix is None


@pytest.mark.perf
def test_bridge_wakeup_takes_under_5_ms(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    details = by_name(run_checks(clean_env))["bridge wake-up"].details
    assert details["same_cpu_us"] < 5000 and details["cross_cpu_us"] < 5000, details


def test_roms_check_counts_only_imported_roms(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contestkit.env.roms import list_roms

    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    check = by_name(run_checks(clean_env))["roms"]
    present = sorted(g.game for g in list_roms() if g.present)
    assert "Airstriker-Genesis" in present  # ships with stable-retro
    assert check.details["present"] == present
    if any("Sonic" in game for game in present):
        assert check.status == OK
    else:  # a listed-but-missing Sonic ROM must not pass for an imported one
        assert check.status == WARN and "no Sonic game" in check.summary and "roms import" in (check.fix or "")


def test_wakeup_measurement_leaves_the_callers_cpus_as_they_were() -> None:
    from contestkit.bridge.wakeup import round_trip

    before = os.sched_getaffinity(0)
    seconds = round_trip(0.0002, n=50, cpu=max(before))
    assert 0 < seconds
    assert os.sched_getaffinity(0) == before


@pytest.mark.perf
def test_a_wakeup_round_trip_takes_under_50_ms() -> None:
    from contestkit.bridge.wakeup import round_trip

    assert round_trip(0.0002, n=50, cpu=max(os.sched_getaffinity(0))) < 0.05


def test_config_error_is_reported_with_line(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    (clean_env / "contestkit.yaml").write_text("name: agent\nregistyr: x\n")
    results = by_name(run_checks(clean_env))
    assert results["config"].status == FAIL
    assert "line 2" in results["config"].summary and "'registyr'" in results["config"].summary
    assert results["registry login"].status == SKIP


def test_registry_login_detection(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    (clean_env / "contestkit.yaml").write_text("name: agent\nregistry: reg.example.com:5000/team\n")
    (clean_env / "Dockerfile").write_text("FROM contestkit/agent:cpu\n")
    login = by_name(run_checks(clean_env))["registry login"]
    assert login.status == FAIL and "reg.example.com:5000" in login.summary
    assert login.fix and "contestkit registry login" in login.fix

    docker_cli = clean_env / "docker-cli"
    docker_cli.mkdir()
    (docker_cli / "config.json").write_text(
        json.dumps({"auths": {"https://reg.example.com:5000": {"auth": "dXNlcjpwYXNz"}}})
    )
    assert docker_logged_in("reg.example.com:5000")
    assert not docker_logged_in("other.example.com")
    assert by_name(run_checks(clean_env))["registry login"].status == OK
    assert by_name(run_checks(clean_env))["project"].status == OK


def test_stored_registry_credentials_are_what_doctor_reads(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store `contestkit registry login` writes (contestkit.client.credentials) makes the check pass,
    with or without a registry in the project; the docker CLI's config is left empty on purpose."""
    from contestkit.client.credentials import RegistryCredentials, save_registry_credentials

    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    (clean_env / "contestkit.yaml").write_text("name: agent\nregistry: reg.example.com:5000/team\n")
    (clean_env / "Dockerfile").write_text("FROM contestkit/agent:cpu\n")
    assert by_name(run_checks(clean_env))["registry login"].status == FAIL
    save_registry_credentials(RegistryCredentials("reg.example.com:5000/team", "team", "pw", scheme="http"))
    login = by_name(run_checks(clean_env))["registry login"]
    assert login.status == OK and "reg.example.com:5000/team" in login.summary, login
    (clean_env / "contestkit.yaml").unlink()  # no project, no registry in any config
    login = by_name(run_checks(clean_env))["registry login"]
    assert login.status == OK and "reg.example.com:5000/team" in login.summary, login


def test_no_registry_is_a_warning_not_a_failure(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{clean_env}/no-docker.sock")
    login = by_name(run_checks(clean_env))["registry login"]
    assert login.status == WARN and login.fix


@pytest.mark.docker
def test_doctor_with_engine(clean_env: Path, docker_api: Any, toolkit_images: dict[str, str]) -> None:
    results = run_checks(clean_env)
    named = by_name(results)
    engine = named["docker engine"]
    assert engine.status == OK
    assert engine.details["version"] == docker_api.version()["Version"]
    nvidia = named["nvidia runtime"]
    has_nvidia = "nvidia" in (docker_api.info().get("Runtimes") or {})
    assert nvidia.status == (OK if has_nvidia else WARN)
    if not has_nvidia:
        assert "NVIDIA Container Toolkit" in (nvidia.fix or "")
    assert named["python base image"].status == OK
    assert named["image contestkit/agent:cpu"].status == OK
    assert "roms" in named
    for result in results:
        if result.status in (WARN, FAIL):
            assert result.fix, f"{result.name} has no fix"


@pytest.mark.docker
def test_doctor_cli_json(clean_env: Path, docker_api: Any) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(clean_env / "xdg"), "DOCKER_CONFIG": str(clean_env / "d")}
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "doctor", "--json", "--dir", str(clean_env)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == (1 if not doc["ok"] else 0)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["docker engine"]["status"] == OK
    assert {"name", "status", "summary", "fix", "details"} <= set(checks["config"])

    env["DOCKER_HOST"] = f"unix://{clean_env}/none.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "doctor"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "docker engine" in proc.stdout and "->" in proc.stdout


@pytest.mark.docker
def test_doctor_in_a_project_marks_its_base_image_required(clean_env: Path, docker_api: Any) -> None:
    project = clean_env / "proj"
    project.mkdir()
    (project / "contestkit.yaml").write_text("name: proj\nentry: agent.py\n")
    dockerfile = "ARG BASE_IMAGE=contestkit/agent:pytorch\nFROM ${BASE_IMAGE}\nADD . /root/compo/\n"
    (project / "Dockerfile").write_text(dockerfile)
    named = by_name(run_checks(project))
    check = named["image contestkit/agent:pytorch"]
    assert "optional" not in check.summary
    if check.status == OK:  # built by an earlier run on this engine
        assert "this project's base" in check.summary
    else:
        assert check.status == WARN and "required" in check.summary and "images build pytorch" in check.fix
    if check.summary.startswith("not built"):  # outside the project the same missing image is optional again
        assert "optional" in by_name(run_checks(clean_env))["image contestkit/agent:pytorch"].summary
