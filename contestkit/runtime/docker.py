"""The Docker runtime: the agent image and the remote-env image, as the evaluation server ran them.

Two containers meet through a fresh tmpfs volume mounted at ``/root/compo/tmp`` in both (so the
agent's ``tmp/sock`` is the bridge); the agent has no network; the results directory is
bind-mounted into the remote-env container, which runs the same env program as the local runtime
(``python -m contestkit.runs.envprogram``). Everything this module creates carries the label
``org.contestkit.session``, and everything is removed on every way out, including a failure
half-way through :meth:`DockerLauncher.start`; sessions left by a contestkit process that was
killed outright are swept at the next start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contestkit.env.games import resolve_level, rom_path
from contestkit.errors import ContestkitError, NotFoundError, UsageError
from contestkit.runs import results
from contestkit.runs.capped_output import HeadTailWriter
from contestkit.runs.levelrun import ENGINE_LOG_MAX, LOG_LIMIT, EnvPlacement, LevelRunSpec, Scope, scope_names, to_argv
from contestkit.runtime.base import Runtime

SESSION_LABEL = "org.contestkit.session"
OWNER_LABEL = "org.contestkit.owner"  # host:pid of the contestkit process that made it
BRIDGE_MOUNT = "/root/compo/tmp"
OUT_MOUNT = "/root/compo/out"
RESULTS_MOUNT = "/results"
ROM_MOUNT = "/roms"


# The engine's own copy of each container's output: one file of at most ENGINE_LOG_MAX (the kept
# copy is the results files, bounded by the spec's log_limit).
_ENGINE_LOG = {"type": "json-file", "config": {"max-size": ENGINE_LOG_MAX, "max-file": "1"}}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_orphans(api: Any) -> int:
    """Remove containers and volumes of sessions whose contestkit process on this host is gone."""
    host = socket.gethostname()
    removed = 0
    for c in api.containers(all=True, filters={"label": SESSION_LABEL}):
        owner = (c.get("Labels") or {}).get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            api.remove_container(c["Id"], force=True)
            removed += 1
    for v in (api.volumes(filters={"label": SESSION_LABEL}) or {}).get("Volumes") or []:
        owner = (v.get("Labels") or {}).get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            try:
                api.remove_volume(v["Name"], force=True)
                removed += 1
            except Exception:  # still in use by a container being removed: next sweep
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_cpus(wanted: float) -> float:
    """Docker refuses a CPU limit above the host's core count; the contest's 6 become what exists."""
    return min(wanted, float(os.cpu_count() or 1))


# How long the log streams may take to deliver what a container wrote before it exited. Not 5 s, as
# it was: an agent that printed 64 MiB just before its level ended left the stream that far behind
# on a loaded machine, and the results were read half-written (no tail, no elision marker). A
# stream still open after this is abandoned (the logs so far are kept).
LOG_DRAIN_SECONDS = 120.0


class _Waiter(threading.Thread):
    """Waits for a container to exit and streams its logs into the results files meanwhile."""

    def __init__(self, api: Any, container: str, stdout: Path, stderr: Path, limit: int = LOG_LIMIT) -> None:
        super().__init__(daemon=True)
        self.api, self.container = api, container
        self.stdout, self.stderr = stdout, stderr
        self.limit = limit  # bytes kept of each stream (capped_output: head and tail)
        self.exit_code: int | None = None
        self._log_threads = [
            threading.Thread(target=self._pump, args=(stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(stderr, False), daemon=True),
        ]

    def _pump(self, path: Path, is_stdout: bool) -> None:
        out = HeadTailWriter(path, self.limit)
        try:
            for chunk in self.api.logs(self.container, stream=True, follow=True, stdout=is_stdout,
                                       stderr=not is_stdout):  # fmt: skip
                out.write(chunk)
        except Exception:  # the container was removed under us: the logs so far are kept
            pass
        finally:
            out.close()

    def run(self) -> None:
        for t in self._log_threads:
            t.start()
        try:
            code = int(self.api.wait(self.container)["StatusCode"])
        except Exception:
            code = -1
        deadline = time.monotonic() + LOG_DRAIN_SECONDS
        for t in self._log_threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._note_out_of_memory()
        self.exit_code = code  # last: whoever sees the exit reads the complete output files

    def _note_out_of_memory(self) -> None:
        """Say so at the end of stderr when the engine killed the container for its memory limit: the
        level's error quotes stderr's last lines, and a bare "status 137" does not say why."""
        try:
            container = self.api.inspect_container(self.container)
        except Exception:
            return
        state, limit = container.get("State") or {}, (container.get("HostConfig") or {}).get("Memory") or 0
        if state.get("OOMKilled"):
            with open(self.stderr, "ab") as f:
                f.write(f"\n[contestkit: stopped for using more than its memory limit "
                        f"({limit / 2**20:.0f} MiB, the host's agent_memory)]\n".encode())  # fmt: skip


class DockerSession:
    def __init__(self, api: Any, spec: LevelRunSpec, results_dir: Path, remote_image: str) -> None:
        self.api = api
        self.id = uuid.uuid4().hex[:12]
        self.labels = {SESSION_LABEL: self.id, OWNER_LABEL: _owner()}
        self.containers: list[str] = []
        self.volume: str | None = None
        self.env_waiter: _Waiter | None = None
        self.agent_waiter: _Waiter | None = None
        try:
            self._start(spec, results_dir, remote_image)
        except BaseException as exc:
            self.close()
            from docker.errors import DockerException

            if isinstance(exc, DockerException):
                detail = getattr(exc, "explanation", None) or str(exc)
                raise ContestkitError(f"Docker could not start the evaluation: {detail}") from None
            raise

    def _start(self, spec: LevelRunSpec, rd: Path, remote_image: str) -> None:
        api = self.api
        out = rd / results.AGENT_OUT
        out.mkdir(parents=True, exist_ok=True)
        for name in (results.AGENT_STDOUT, results.AGENT_STDERR, results.REMOTE_STDOUT, results.REMOTE_STDERR):
            (rd / name).write_bytes(b"")
        self.volume = api.create_volume(
            name=f"contestkit-bridge-{self.id}",
            driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={spec.bridge_tmpfs_size}"},
            labels=self.labels,
        )["Name"]

        binds: dict[str, dict[str, str]] = {
            self.volume: {"bind": BRIDGE_MOUNT, "mode": "rw"},
            str(rd): {"bind": RESULTS_MOUNT, "mode": "rw"},
        }
        level = resolve_level(spec.game, spec.state, check_rom=False)
        rom = rom_path(level.game)
        if rom is not None:  # ROMs imported on the host reach the env read-only
            binds[str(rom)] = {"bind": f"{ROM_MOUNT}/{level.emulator_game}{rom.suffix}", "mode": "ro"}
        args = to_argv(
            spec,
            EnvPlacement(
                bridge_dir=Path(f"{BRIDGE_MOUNT}/sock"),
                results_dir=Path(RESULTS_MOUNT),
                rom_dir=Path(ROM_MOUNT) if rom is not None else None,
                chown=f"{os.getuid()}:{os.getgid()}" if os.getuid() != 0 else None,
            ),
        )
        env_id = api.create_container(
            remote_image,
            command=args,
            labels=self.labels,
            name=f"contestkit-remote-{self.id}",
            host_config=api.create_host_config(
                binds=binds,
                network_mode="none",
                auto_remove=False,
                cpuset_cpus=str(spec.cpuset) if spec.cpuset else None,
                log_config=_ENGINE_LOG,
            ),
        )["Id"]
        self.containers.append(env_id)

        host_config: dict[str, Any] = {
            "binds": {
                self.volume: {"bind": BRIDGE_MOUNT, "mode": "rw"},
                str(out): {"bind": OUT_MOUNT, "mode": "rw"},
            },
            "network_mode": "none",
            "nano_cpus": int(_host_cpus(spec.agent_cpus) * 1e9),
            "mem_limit": spec.agent_memory,
            "memswap_limit": spec.agent_memory,  # no swap beyond the memory limit
            "cpuset_cpus": str(spec.cpuset) if spec.cpuset else None,
            "pids_limit": spec.pids_limit,
            "log_config": _ENGINE_LOG,
        }
        if spec.gpus:
            import docker.types

            host_config["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        agent_id = api.create_container(
            spec.image,
            labels=self.labels,
            name=f"contestkit-agent-{self.id}",
            environment={"CONTESTKIT_OUT_DIR": OUT_MOUNT, "PYTHONUNBUFFERED": "1", **spec.env_vars},
            host_config=api.create_host_config(**host_config),
        )["Id"]
        self.containers.append(agent_id)

        api.start(env_id)
        self.env_waiter = _Waiter(api, env_id, rd / results.REMOTE_STDOUT, rd / results.REMOTE_STDERR, spec.log_limit)
        self.env_waiter.start()
        try:
            api.start(agent_id)
        except Exception as exc:
            if spec.gpus and "gpu" in str(exc).lower():
                raise ContestkitError(
                    "--gpus needs the NVIDIA container runtime, and this Docker engine has none: install the "
                    "NVIDIA Container Toolkit or drop --gpus."
                ) from None
            raise
        self.agent_waiter = _Waiter(api, agent_id, rd / results.AGENT_STDOUT, rd / results.AGENT_STDERR, spec.log_limit)
        self.agent_waiter.start()

    def env_exit(self) -> int | None:
        return self.env_waiter.exit_code if self.env_waiter else -1

    def agent_exit(self) -> int | None:
        return self.agent_waiter.exit_code if self.agent_waiter else -1

    def _stop(self, index: int, grace: float) -> None:
        if len(self.containers) > index:
            try:
                self.api.stop(self.containers[index], timeout=max(1, int(grace)))
            except Exception:
                pass

    def stop_agent(self, grace: float) -> None:
        self._stop(1, grace)

    def stop_env(self, grace: float) -> None:
        self._stop(0, grace)

    def close(self) -> None:
        for cid in reversed(self.containers):
            try:
                self.api.remove_container(cid, force=True)
            except Exception:
                pass
        for waiter in (self.agent_waiter, self.env_waiter):
            if waiter is not None:
                waiter.join(timeout=10)
        if self.volume:
            try:
                self.api.remove_volume(self.volume, force=True)
            except Exception:
                pass


class DockerLauncher:
    name = Runtime.DOCKER
    # Everything but ``agent`` (a local script: a container runs the image's own entry point);
    # ``project_dir`` names the project whose last build is the image.
    honours = scope_names(Scope.ENV, Scope.AGENT, Scope.DOCKER) - {"agent"}

    def __init__(self, on_event: Callable[[str], None] | None = None) -> None:
        self.on_event = on_event

    def check(self, spec: LevelRunSpec) -> None:
        from contestkit.containers import images

        if not spec.image:
            raise UsageError(
                "The docker runtime needs an agent image: pass --image IMAGE, or run `contestkit build` in "
                "your agent project first."
            )
        # Asked even for a toolkit image (built on first use): no engine must fail here, not later.
        if not images.image_present(spec.image) and not images.is_toolkit_image(spec.image):
            raise NotFoundError(
                f"No image '{spec.image}' in the Docker engine: build it (`contestkit build`) or pull it first."
            )
        remote = spec.remote_image
        if remote and not images.is_toolkit_image(remote) and not images.image_present(remote):
            raise NotFoundError(f"No remote-env image '{remote}' in the Docker engine: pull or build it first.")

    def start(self, spec: LevelRunSpec, results_dir: Path) -> DockerSession:
        from contestkit.containers import dockerengine, images

        api = dockerengine.connect()
        sweep_orphans(api)
        if images.inspect_image(api, spec.image) is None:  # a toolkit image: built on first use
            images.ensure_image(spec.image, self._event, api=api)
        if spec.remote_image and not images.is_toolkit_image(spec.remote_image):
            remote = spec.remote_image  # a host's own env image, checked present by check()
        else:
            remote = images.ensure_image(spec.remote_image or "remote-env", self._event, api=api)
        return DockerSession(api, spec, results_dir, remote)

    def _event(self, event: Any) -> None:
        if self.on_event is not None and getattr(event, "kind", "") in ("info", "done"):
            self.on_event(getattr(event, "message", str(event)))
