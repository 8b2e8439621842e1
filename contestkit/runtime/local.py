"""The local runtime: the env program and the agent as two processes on this machine.

The agent runs in a fresh working directory laid out like the agent container's ``/root/compo``:
``tmp/sock`` is the bridge and ``out/`` is the agent's output directory (a link to the results'
``out/``). Both processes get their own session (process group), so a Ctrl-C in the terminal
reaches only contestkit, which then stops them in order and keeps the results.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from contestkit.bridge.protocol import memory_tmpdir
from contestkit.errors import UsageError
from contestkit.projects.agentdeps import check_agent_imports
from contestkit.runs import results
from contestkit.runs.levelrun import EnvPlacement, LevelRunSpec, Scope, scope_names, to_argv
from contestkit.runtime.base import ENV_PROGRAM, Runtime, agent_command


def _stop(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LocalSession:
    def __init__(self, spec: LevelRunSpec, results_dir: Path) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ck-", dir=memory_tmpdir()))
        self._files: list[IO[bytes]] = []
        (self.workdir / "tmp").mkdir()
        bridge = self.workdir / "tmp" / "sock"
        out = results_dir / results.AGENT_OUT
        out.mkdir(parents=True, exist_ok=True)
        (self.workdir / "out").symlink_to(out, target_is_directory=True)

        def _log(name: str) -> IO[bytes]:
            f = open(results_dir / name, "wb")  # noqa: SIM115 (closed in close())
            self._files.append(f)
            return f

        env_cmd = [sys.executable, "-m", ENV_PROGRAM, *to_argv(spec, EnvPlacement(bridge, results_dir))]
        self.env_proc = subprocess.Popen(
            env_cmd,
            stdin=subprocess.DEVNULL,
            stdout=_log(results.REMOTE_STDOUT),
            stderr=_log(results.REMOTE_STDERR),
            start_new_session=True,
        )
        agent_env = dict(os.environ)
        paths = [str(spec.project_dir or Path.cwd())]
        if agent_env.get("PYTHONPATH"):
            paths.append(agent_env["PYTHONPATH"])
        agent_env.update(
            PYTHONPATH=os.pathsep.join(paths),
            PYTHONUNBUFFERED="1",
            CONTESTKIT_OUT_DIR=str(out),
            CONTESTKIT_BRIDGE=str(bridge),
            **spec.env_vars,
        )
        self.agent_proc = subprocess.Popen(
            agent_command(spec.agent or ""),
            cwd=self.workdir,
            env=agent_env,
            stdin=subprocess.DEVNULL,
            stdout=_log(results.AGENT_STDOUT),
            stderr=_log(results.AGENT_STDERR),
            start_new_session=True,
        )
        if spec.cpuset:
            # Set from here rather than in preexec_fn (unsafe with the threads of --parallel); the
            # children are still starting the interpreter, long before they open the bridge.
            for proc in (self.env_proc, self.agent_proc):
                try:
                    os.sched_setaffinity(proc.pid, spec.cpuset.cpus)
                except ProcessLookupError:
                    pass  # already gone: its exit status tells the story

    def env_exit(self) -> int | None:
        return self.env_proc.poll()

    def agent_exit(self) -> int | None:
        return self.agent_proc.poll()

    def stop_agent(self, grace: float) -> None:
        _stop(self.agent_proc, grace)

    def stop_env(self, grace: float) -> None:
        _stop(self.env_proc, grace)

    def close(self) -> None:
        deadline = time.monotonic() + 1.0
        for proc in (self.agent_proc, self.env_proc):
            if proc.poll() is None:
                _stop(proc, max(0.1, deadline - time.monotonic()))
        for f in self._files:
            f.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalLauncher:
    name = Runtime.LOCAL
    # Every field but the Docker-only ones: processes have no image, resource limits or tmpfs.
    honours = scope_names(Scope.ENV, Scope.AGENT)

    def check(self, spec: LevelRunSpec) -> None:
        if spec.cpuset and not hasattr(os, "sched_setaffinity"):
            raise UsageError("--cpuset needs Linux for the local runtime; drop it, or use --runtime docker.")
        # Before anything starts: a missing module is one sentence with the install command, not
        # a traceback in agent-stderr.txt after the env has loaded the game.
        check_agent_imports(spec.agent or "", spec.project_dir)

    def start(self, spec: LevelRunSpec, results_dir: Path) -> LocalSession:
        return LocalSession(spec, results_dir)
