"""Benchmark: image sizes, and rebuild time after a one-line agent change (goal: <= 5 s).

    python bench/images.py                 # sizes of what is built + rebuild timings
    python bench/images.py --frameworks    # also build and size agent:pytorch and agent:tensorflow
    python bench/images.py --json out.json

The rebuild is timed end to end as a user runs it (``python -m contestkit build`` in a
subprocess: interpreter start, context upload, the build, tagging), in a throwaway agent project
laid out like the templates (``FROM contestkit/agent:cpu`` + ``ADD . /root/compo/``). Baselines,
measured in the same run on the same machine: the project's first build, a ``--no-cache``
rebuild (every layer of the user image rebuilt; the toolkit base stays as it is), and a
``--no-cache`` build of ``contestkit/agent:cpu`` itself (what every change would cost if the
code were not in the last layer: dependencies downloaded and installed again).

For scale: the 2018 ``openai/retro-agent`` images carried a full CUDA userland (several GB).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from contestkit.containers.dockerengine import connect, engine_info  # noqa: E402
from contestkit.containers.images import IMAGES, build_images, list_images  # noqa: E402

DOCKERFILE = """\
ARG BASE_IMAGE=contestkit/agent:cpu
FROM ${BASE_IMAGE}
ADD . /root/compo/
"""
AGENT = """\
import gym_remote.client as grc
import gym_remote.exceptions as gre

STEP = 0  # edited by the benchmark


def main():
    env = grc.RemoteEnv("tmp/sock")
    env.reset()
    while True:
        action = env.action_space.sample()
        action[7] = 1
        _, _, done, _ = env.step(action)
        if done:
            env.reset()


if __name__ == "__main__":
    try:
        main()
    except gre.GymRemoteError as exc:
        print("exception", exc)
"""


def _git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com"}
    env.update(GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


def _cli_build(root: Path, *extra: str) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "build", "bench", *extra],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"contestkit build failed:\n{proc.stderr}")
    return elapsed


def rebuild_timings(runs: int) -> dict[str, object]:
    """First build, --no-cache rebuild and one-line-change rebuilds of a throwaway project."""
    with tempfile.TemporaryDirectory(prefix="contestkit-bench-") as tmp:
        root = Path(tmp) / "bench-agent"
        root.mkdir()
        (root / "contestkit.yaml").write_text("name: contestkit-bench-agent\nregistry: null\nentry: agent.py\n")
        (root / "Dockerfile").write_text(DOCKERFILE)
        (root / ".dockerignore").write_text(".git\nresults/\n")
        (root / "agent.py").write_text(AGENT)
        _git(root, "init", "-q")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "bench")
        first = _cli_build(root)
        no_cache = _cli_build(root, "--no-cache")
        one_line = []
        for i in range(runs):
            text = (root / "agent.py").read_text()
            (root / "agent.py").write_text(text.replace(f"STEP = {i}", f"STEP = {i + 1}"))
            one_line.append(_cli_build(root))
        api = connect()
        try:
            for ref in ("contestkit-bench-agent:bench", "contestkit-bench-agent:latest"):
                try:
                    api.remove_image(ref, force=True)
                except Exception:  # noqa: BLE001 - already gone is fine
                    pass
        finally:
            api.close()
    return {
        "first_build_s": round(first, 2),
        "no_cache_rebuild_s": round(no_cache, 2),
        "one_line_rebuild_s": [round(x, 2) for x in one_line],
        "one_line_rebuild_median_s": round(statistics.median(one_line), 2),
        "goal_s": 5.0,
        "meets_goal": statistics.median(one_line) <= 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", action="store_true", help="also build agent:pytorch and agent:tensorflow")
    parser.add_argument("--runs", type=int, default=5, help="one-line rebuilds to time (default 5)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--skip-base-baseline",
        action="store_true",
        help="skip timing a --no-cache build of contestkit/agent:cpu (the cost without layer reuse)",
    )
    args = parser.parse_args()

    started = time.monotonic()
    names = list(IMAGES) if args.frameworks else None
    build_images(names)
    ensure_s = time.monotonic() - started
    info = engine_info()
    sizes = {
        row.ref: round(row.size_bytes / 1e6, 1)
        for row in list_images()
        if row.size_bytes and (row.key in IMAGES or row.key == "python")
    }
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "docker": info.version,
            "storage_root": info.root_dir,
        },
        "images_ready_s": round(ensure_s, 1),
        "image_sizes_mb": sizes,
        "rebuild": rebuild_timings(args.runs),
    }
    if not args.skip_base_baseline:
        started = time.monotonic()
        build_images(["cpu"], nocache=True)
        result["rebuild"]["agent_cpu_no_cache_build_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
