"""``contestkit doctor``: is this machine ready to build, evaluate and submit agents?

Each check returns a :class:`CheckResult` (never prints): ``ok``, ``warn`` (works, but something
users usually want is missing, e.g. no GPU runtime), ``fail`` (a command will not work until
fixed) or ``skip`` (could not be checked because an earlier check failed). Every non-ok result
carries ``fix``: the one thing to do about it. The CLI renders them, or prints them as JSON.

Checks are independent where they can be: a broken config does not hide the engine status, and
no engine only skips what needs one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contestkit.errors import ContestkitError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class CheckResult:
    """Outcome of one check."""

    name: str
    status: str
    summary: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``doctor --json``."""
        return asdict(self)


@dataclass
class _State:
    """What earlier checks learned, for later ones."""

    project_dir: Path | None
    config: Any = None
    api: Any = None
    info: Any = None


def _check_config(state: _State) -> list[CheckResult]:
    from contestkit.projects.config import load_config

    try:
        state.config = load_config(state.project_dir)
    except ContestkitError as exc:
        return [CheckResult("config", FAIL, str(exc), "Fix the file and line named above.")]
    cfg = state.config
    where = [str(p) for p in (cfg.project_file, cfg.user_file) if p and Path(p).is_file()]
    summary = "valid (" + (", ".join(where) if where else "defaults only") + ")"
    return [CheckResult("config", OK, summary, details={"values": cfg.public(), "sources": cfg.sources})]


def _check_project(state: _State) -> list[CheckResult]:
    from contestkit.projects.project import find_project

    try:
        project = find_project(state.project_dir)
    except ContestkitError as exc:
        return [CheckResult("project", FAIL, str(exc), "Fix the name in contestkit.yaml.")]
    if project is None:
        return [CheckResult("project", SKIP, "not inside an agent project", "`contestkit new NAME` creates one.")]
    if not project.dockerfile.is_file():
        return [
            CheckResult(
                "project",
                FAIL,
                f"{project.name}: {project.dockerfile} is missing",
                f"Create it, or set dockerfile in {project.config_file}.",
            )
        ]
    return [CheckResult("project", OK, f"{project.name} at {project.root}", details={"root": str(project.root)})]


def _check_engine(state: _State) -> list[CheckResult]:
    from contestkit.containers.dockerengine import START_HINT, connect, engine_info, engine_url

    try:
        state.api = connect(timeout=10)
        state.info = engine_info(state.api)
    except ContestkitError as exc:
        return [
            CheckResult("docker engine", FAIL, str(exc), START_HINT[0].upper() + START_HINT[1:] + "."),
            CheckResult("nvidia runtime", SKIP, "no engine to ask", "Start the Docker engine first."),
        ]
    info = state.info
    results = [
        CheckResult(
            "docker engine",
            OK,
            f"Docker {info.version} (API {info.api_version}) at {engine_url()}, {info.cpus} CPUs, "
            f"{info.memory_bytes / 2**30:.0f} GiB",
            details={
                "version": info.version,
                "api_version": info.api_version,
                "runtimes": list(info.runtimes),
            },
        )
    ]
    if info.has_nvidia:
        results.append(CheckResult("nvidia runtime", OK, "nvidia runtime registered: `eval --gpus` works"))
    else:
        results.append(
            CheckResult(
                "nvidia runtime",
                WARN,
                f"no NVIDIA runtime (runtimes: {', '.join(info.runtimes) or 'none'}): `eval --gpus` is unavailable",
                "For GPU agents install the NVIDIA Container Toolkit and restart the engine; CPU evals are unaffected.",
            )
        )
    return results


def _project_bases(state: _State) -> set[str]:
    """The toolkit images the project's Dockerfile builds on (``FROM``, build args applied):
    required here, whatever they are elsewhere."""
    from contestkit.containers.build import base_images, build_args
    from contestkit.projects.project import find_project

    try:
        project = find_project(state.project_dir)
        if project is None or not project.dockerfile.is_file():
            return set()
        text = project.dockerfile.read_text(encoding="utf-8", errors="replace")
        return set(base_images(text, build_args(text, project.config)))
    except (ContestkitError, OSError):
        return set()  # the project check reports what is wrong with it


def _check_images(state: _State) -> list[CheckResult]:
    from contestkit.containers.images import BOOTSTRAP_IMAGE, IMAGES, list_images

    if state.api is None or state.config is None:
        return [CheckResult("images", SKIP, "needs a Docker engine and a valid config", "Fix the checks above.")]
    try:
        rows = list_images(state.api, state.config)
    except ContestkitError as exc:
        return [CheckResult("images", FAIL, str(exc), "Fix the problem above, then `contestkit images build`.")]
    needed = _project_bases(state)
    results = []
    for row in rows:
        if row.key == "python":
            if row.state == "missing":
                results.append(
                    CheckResult(
                        "python base image",
                        FAIL,
                        f"{row.ref} is not here (and no {BOOTSTRAP_IMAGE} stand-in)",
                        f"`docker pull {row.ref}`, or `contestkit images bootstrap` where no registry is reachable.",
                    )
                )
            else:
                results.append(CheckResult("python base image", OK, f"{row.ref} ({row.size_bytes / 1e6:.0f} MB)"))
            continue
        if row.key not in IMAGES:
            continue
        spec = IMAGES[row.key]
        label = f"image {spec.ref}"
        base = spec.ref in needed
        if row.state == "current":
            mine = ", this project's base" if base else ""
            results.append(CheckResult(label, OK, f"built, up to date ({row.size_bytes / 1e6:.0f} MB){mine}"))
        elif row.state == "missing" and base:
            results.append(
                CheckResult(
                    label,
                    WARN,
                    "not built, and required: this project's Dockerfile builds on it "
                    "(`contestkit build` builds it first, minutes)",
                    f"`contestkit images build {spec.key}` now.",
                )
            )
        elif row.state == "missing" and not spec.default:
            results.append(
                CheckResult(
                    label,
                    OK,
                    "not built (optional)",
                    details={"build": f"contestkit images build {spec.key}"},
                )
            )
        elif row.state == "missing":
            results.append(
                CheckResult(
                    label,
                    WARN,
                    "not built: the first docker eval will build it (minutes)",
                    f"`contestkit images build {spec.key}` now.",
                )
            )
        else:
            results.append(
                CheckResult(
                    label,
                    WARN,
                    f"{row.state}: built by another contestkit version or from other code ({row.version or '?'})"
                    + (", and required: this project's Dockerfile builds on it" if base else ""),
                    f"`contestkit images build {spec.key}` (eval also rebuilds it on first use).",
                )
            )
    return results


def _check_roms(state: _State) -> list[CheckResult]:
    from contestkit.env import roms

    try:
        games = roms.list_roms()
    except ContestkitError as exc:
        return [CheckResult("roms", FAIL, str(exc), "Fix the problem above; `contestkit roms list` shows details.")]
    except Exception as exc:  # a ROM scan must not crash the whole report
        return [CheckResult("roms", FAIL, f"listing ROMs failed: {exc}", "Run `contestkit roms list` for details.")]
    present = sorted(g.game for g in games if g.present)
    sonic = [name for name in present if "Sonic" in name]
    details = {"present": present, "missing": sorted(g.game for g in games if not g.present)}
    if not present:
        return [
            CheckResult(
                "roms",
                WARN,
                "no contest ROM imported",
                "`contestkit roms import PATH` with your Sonic ROMs (Airstriker-Genesis ships with stable-retro).",
                details,
            )
        ]
    if not sonic:
        return [
            CheckResult(
                "roms",
                WARN,
                f"{', '.join(present)} present, but no Sonic game (the contest's levels)",
                "`contestkit roms import PATH` with the Sonic ROMs you own (e.g. from Steam).",
                details,
            )
        ]
    return [CheckResult("roms", OK, f"{len(present)} of {len(games)} contest games present, {len(sonic)} Sonic",
                        details=details)]  # fmt: skip


def docker_logged_in(host: str, docker_config: Path | None = None) -> bool:
    """Whether the docker CLI config has credentials (or a helper) for registry ``host``."""
    path = docker_config or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    auths = data.get("auths") or {}
    if any(key.split("://")[-1].split("/")[0] == host for key in auths):
        return True
    return host in (data.get("credHelpers") or {})


def _check_registry(state: _State) -> list[CheckResult]:
    """Can this machine push? Asks the one store ``contestkit registry login`` writes, then docker's.

    The team registry of ``registry login`` is where ``push`` and ``submit`` send images, whatever
    the project's ``registry`` says; a ``registry`` set without that login is checked against the
    docker CLI's own logins (``docker login HOST`` by hand).
    """
    from contestkit.client.credentials import load_registry_credentials
    from contestkit.containers.imageref import registry_host

    cfg = state.config
    if cfg is None:
        return [CheckResult("registry login", SKIP, "needs a valid config", "Fix the config check above.")]
    try:
        stored = load_registry_credentials()
    except ContestkitError as exc:
        return [CheckResult("registry login", FAIL, str(exc), "`contestkit registry login` writes them afresh.")]
    if stored is not None:
        return [
            CheckResult(
                "registry login",
                OK,
                f"team registry {stored.url} (user {stored.username}), saved by `contestkit registry login`",
                details={"registry": stored.url, "host": stored.host},
            )
        ]
    if not cfg.registry:
        return [
            CheckResult(
                "registry login",
                WARN,
                "no registry configured (needed to push and submit, not to build or eval)",
                "Run `contestkit registry login` (after `contestkit login`), or set registry in contestkit.yaml.",
            )
        ]
    host = registry_host(cfg.registry)
    if docker_logged_in(host):
        return [CheckResult("registry login", OK, f"docker is logged in to {host}")]
    return [
        CheckResult(
            "registry login",
            FAIL,
            f"not logged in to {host} (registry from {cfg.sources.get('registry')})",
            "`contestkit registry login` (or `docker login " + host + "`).",
        )
    ]


def _check_ca(state: _State) -> list[CheckResult]:
    cfg = state.config
    if cfg is None:
        return []
    from contestkit.containers.images import ca_bundle_bytes

    if cfg.ca_bundle is None:
        return [CheckResult("ca bundle", OK, "none configured: builds trust the default CAs")]
    try:
        ca_bundle_bytes(cfg)
    except ContestkitError as exc:
        return [CheckResult("ca bundle", FAIL, str(exc), "Point ca_bundle (or $PIP_CERT) at a PEM file.")]
    return [CheckResult("ca bundle", OK, f"{cfg.ca_bundle} (from {cfg.sources['ca_bundle']}) is used inside builds")]


# About one contest timestep of emulation on a current CPU; the bridge's wake-up is paid once per
# timestep, and the agent has slept this long when it comes.
_TIMESTEP_SECONDS = 0.0012
# Cross-CPU wake-ups this much dearer than same-CPU ones (about 2% of a timestep) make --cpuset
# worth a single-threaded agent's while.
_WORTH_CPUSET_US = 20.0


def _check_bridge(state: _State) -> list[CheckResult]:
    if not hasattr(os, "sched_setaffinity"):
        return [CheckResult("bridge wake-up", SKIP, "CPU affinity is Linux-only; nothing to measure here")]
    from contestkit.bridge.wakeup import round_trip

    cpus = sorted(os.sched_getaffinity(0))
    cross = round(round_trip(_TIMESTEP_SECONDS) * 1e6)
    same = round(round_trip(_TIMESTEP_SECONDS, cpu=cpus[-1]) * 1e6)
    details = {"cross_cpu_us": cross, "same_cpu_us": same, "cpus": len(cpus)}
    summary = (
        f"waking the agent costs {cross} us across CPUs, {same} us on one CPU "
        f"({cross / (_TIMESTEP_SECONDS * 1e4):.1f}% vs {same / (_TIMESTEP_SECONDS * 1e4):.1f}% of a ~1.2 ms timestep)"
    )
    if len(cpus) > 1 and cross - same > _WORTH_CPUSET_US:
        fix = (
            f"For a single-threaded agent, `contestkit eval --cpuset {cpus[-1]}` runs both halves on one CPU "
            "(multi-threaded agents want several CPUs; leave it off for them)."
        )
        return [CheckResult("bridge wake-up", WARN, summary, fix, details)]
    return [CheckResult("bridge wake-up", OK, summary, details=details)]


CHECKS: tuple[Callable[[_State], list[CheckResult]], ...] = (
    _check_config,
    _check_project,
    _check_engine,
    _check_images,
    _check_roms,
    _check_registry,
    _check_ca,
    _check_bridge,
)


def run_checks(project_dir: Path | str | None = None) -> list[CheckResult]:
    """Run every check, in order, and return their results (never raises for a failed check)."""
    state = _State(Path(project_dir) if project_dir else None)
    results: list[CheckResult] = []
    try:
        for check in CHECKS:
            results.extend(check(state))
    finally:
        if state.api is not None:
            state.api.close()
    return results


def failed(results: list[CheckResult]) -> bool:
    """Whether any check failed (``doctor`` then exits non-zero)."""
    return any(r.status == FAIL for r in results)
