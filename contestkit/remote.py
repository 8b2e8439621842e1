"""The env process: one contest level served over the bridge, as the remote-env container runs it.

``python -m contestkit.remote --game G --state S --bridge-dir DIR --results-dir DIR ...``

Every runtime starts this same program (as a local process, or as the remote-env container's
entry point), so budgets, episode logging and the env-side status live here once. It always
writes ``remote-status.json`` before it exits, whatever ended the session.

Exit status: 0 when the session ended normally (budget used, agent closed), 2 for a setup error
(unknown level, missing ROM), 3 when the agent broke the protocol or never connected, 4 when the
emulator failed, 130 when stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from contestkit import results
from contestkit.bridge import protocol
from contestkit.bridge.server import DEFAULT_CONNECT_TIMEOUT, BridgeServer, Budgets, Outcome, Stopped

EXIT_OK = 0
EXIT_SETUP = 2
EXIT_AGENT_FAULT = 3
EXIT_ENV_ERROR = 4
EXIT_STOPPED = 130


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="contestkit-remote", description=__doc__.splitlines()[0])
    ap.add_argument("--game", required=True)
    ap.add_argument("--state", default=None)
    ap.add_argument("--bridge-dir", type=Path, required=True)
    ap.add_argument("--results-dir", type=Path, required=True)
    ap.add_argument("--timestep-limit", type=int, default=1_000_000)
    ap.add_argument("--wallclock-limit", type=float, default=43_200.0)
    ap.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--expose-info", action="store_true", help="send the game's info dict (training only)")
    ap.add_argument("--rom-dir", type=Path, default=None, help="import the ROMs found here first (containers)")
    ap.add_argument("--chown", default=None, help="UID:GID to give the results to at the end (containers)")
    return ap


def _chown_tree(path: Path, owner: str) -> None:
    """Hand the results back to the host user when the env ran as root in a container."""
    uid, _, gid = owner.partition(":")
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                os.chown(os.path.join(root, name), int(uid), int(gid or uid))
            except OSError:
                pass


def _status(outcome: Outcome, args: argparse.Namespace, start_wall: float, episodes: int) -> dict:
    return {
        "end_reason": outcome.end_reason,
        "error": outcome.error,
        "timesteps": outcome.timesteps,
        "episodes": episodes,
        "wall_seconds": outcome.wall_seconds,
        "started_at": start_wall,
        "timestep_limit": args.timestep_limit,
        "wallclock_limit": args.wallclock_limit,
        "seed": args.seed,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **outcome.details,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    start = time.monotonic()
    start_wall = time.time()
    results_dir: Path = args.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)

    def _stop(signum: int, frame: object) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    from contestkit.envs import ContestEnv
    from contestkit.errors import ContestkitError
    from contestkit.games import resolve_level
    from contestkit.monitor import EpisodeLog

    try:
        if args.rom_dir is not None and args.rom_dir.is_dir():
            from contestkit.roms import import_roms

            import_roms(args.rom_dir)
        level = resolve_level(args.game, args.state)
        env = ContestEnv(
            level,
            seed=args.seed,
            record_dir=(results_dir / results.RECORDINGS) if args.record else None,
        )
    except ContestkitError as exc:
        outcome = Outcome("setup-error", str(exc))
        results.write_json(results_dir / results.ENV_STATUS, _status(outcome, args, start_wall, 0))
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
            timestep_limit=args.timestep_limit,
            wallclock_limit=args.wallclock_limit,
        )
        server = BridgeServer(
            args.bridge_dir,
            env,
            hello,
            log,
            Budgets(args.timestep_limit, args.wallclock_limit),
            connect_timeout=args.connect_timeout,
            expose_info=args.expose_info,
            on_progress=lambda prog: results.write_json(progress_path, prog),
            start=start,
        )
        print(f"serving {level.game} {level.state} at {args.bridge_dir}", flush=True)
        outcome = server.serve()
    except Stopped:
        served = server.timesteps if server is not None else 0
        outcome = Outcome("stopped", "evaluation stopped before the budget ran out", timesteps=served)
    finally:
        # From here on the results are written whatever else arrives.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if server is not None:
        results.write_json(progress_path, server.progress())
    log.close()
    env.close()
    results.write_json(results_dir / results.ENV_STATUS, _status(outcome, args, start_wall, len(log.episode_rewards)))
    if args.chown:
        _chown_tree(results_dir, args.chown)
    print(f"session ended: {outcome.end_reason}" + (f" ({outcome.error})" if outcome.error else ""), flush=True)
    if outcome.end_reason == "stopped":
        return EXIT_STOPPED
    if outcome.end_reason == "env-error":
        return EXIT_ENV_ERROR
    if outcome.agent_fault:
        return EXIT_AGENT_FAULT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
