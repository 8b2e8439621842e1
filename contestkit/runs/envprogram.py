"""The env program: one contest level served over the bridge, as the remote-env container runs it.

``python -m contestkit.runs.envprogram --game G --state S --bridge-dir DIR --results-dir DIR ...``

Its command line is :func:`contestkit.runs.levelrun.to_argv` of a level-run spec, read back here with
:func:`contestkit.runs.levelrun.from_argv`.

Every runtime starts this same program (as a local process, or as the remote-env container's
entry point), so budgets, episode logging and the env-side status live here once. It always
writes ``remote-status.json`` before it exits, whatever ended the session.

Exit status: 0 when the session ended normally (budget used, agent closed), 2 for a setup error
(unknown level, missing ROM), 3 when the agent broke the protocol or never connected, 4 when the
emulator failed, 130 when stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from contestkit.bridge import protocol
from contestkit.bridge.protocol import EndReason, Fault
from contestkit.bridge.server import BridgeServer, Budgets, Outcome, Stopped
from contestkit.runs import results
from contestkit.runs.levelrun import LevelRunSpec, from_argv

EXIT_OK = 0
EXIT_SETUP = 2
EXIT_AGENT_FAULT = 3
EXIT_ENV_ERROR = 4
EXIT_STOPPED = 130


def _chown_tree(path: Path, owner: str) -> None:
    """Hand the results back to the host user when the env ran as root in a container."""
    uid, _, gid = owner.partition(":")
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                os.chown(os.path.join(root, name), int(uid), int(gid or uid))
            except OSError:
                pass


def _status(outcome: Outcome, spec: LevelRunSpec, start_wall: float, episodes: int) -> dict:
    return {
        "end_reason": outcome.end_reason,
        "error": outcome.error,
        "timesteps": outcome.timesteps,
        "episodes": episodes,
        "wall_seconds": outcome.wall_seconds,
        "started_at": start_wall,
        "timestep_limit": spec.timestep_limit,
        "wallclock_limit": spec.wallclock_limit,
        "seed": spec.seed,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "options": spec.env_options(),  # the level-run as this program received it
        **outcome.details,
    }


def main(argv: list[str] | None = None) -> int:
    spec, where = from_argv(argv)
    start = time.monotonic()
    start_wall = time.time()
    results_dir: Path = where.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)

    def _stop(signum: int, frame: object) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    from contestkit.env.envs import ContestEnv
    from contestkit.env.games import resolve_level
    from contestkit.env.monitor import EpisodeLog
    from contestkit.errors import ContestkitError

    try:
        if where.rom_dir is not None and where.rom_dir.is_dir():
            from contestkit.env.roms import import_roms

            import_roms(where.rom_dir)
        level = resolve_level(spec.game, spec.state)
        env = ContestEnv(
            level,
            seed=spec.seed,
            record_dir=(results_dir / results.RECORDINGS) if spec.record else None,
        )
    except ContestkitError as exc:
        outcome = Outcome(EndReason.SETUP_ERROR, str(exc))
        results.write_json(results_dir / results.ENV_STATUS, _status(outcome, spec, start_wall, 0))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except Stopped:
        return EXIT_STOPPED

    log = EpisodeLog(results_dir, start=start_wall)
    progress_path = results_dir / results.PROGRESS
    server: BridgeServer | None = None
    try:  # a stop can arrive at any line from here on, not only while serving
        hello = protocol.Hello(
            game=level.game,
            state=level.state,
            buttons=env.buttons,
            obs_shape=list(env.observation_space.shape),
            timestep_limit=spec.timestep_limit,
            wallclock_limit=spec.wallclock_limit,
        )
        server = BridgeServer(
            where.bridge_dir,
            env,
            hello,
            log,
            Budgets(spec.timestep_limit, spec.wallclock_limit),
            connect_timeout=spec.connect_timeout,
            expose_info=spec.expose_info,
            on_progress=lambda prog: results.write_json(progress_path, prog),
            start=start,
        )
        print(f"serving {level.game} {level.state} at {where.bridge_dir}", flush=True)
        outcome = server.serve()
    except Stopped:
        served = server.timesteps if server is not None else 0
        outcome = Outcome(EndReason.STOPPED, "evaluation stopped before the budget ran out", timesteps=served)
    finally:
        # From here on the results are written whatever else arrives.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if server is not None:
        results.write_json(progress_path, server.progress())
    log.close()
    env.close()
    results.write_json(results_dir / results.ENV_STATUS, _status(outcome, spec, start_wall, len(log.episode_rewards)))
    if where.chown:
        _chown_tree(results_dir, where.chown)
    print(f"session ended: {outcome.end_reason}" + (f" ({outcome.error})" if outcome.error else ""), flush=True)
    if outcome.end_reason is EndReason.STOPPED:
        return EXIT_STOPPED
    if outcome.end_reason.fault is Fault.ENV:
        return EXIT_ENV_ERROR
    if outcome.end_reason.fault is Fault.AGENT:
        return EXIT_AGENT_FAULT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
