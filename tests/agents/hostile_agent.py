"""A hostile agent for the level-run limits (issue 23): HOSTILE_MODE says what it abuses.

- ``fork``: forks HOSTILE_COUNT (2,000) sleeping processes; a refused fork is reported and raised;
- ``out``: writes HOSTILE_MB (2,048) MiB into out/, 1 MiB at a time, then plays on;
- ``stdout``: prints HOSTILE_MB MiB to stdout, then plays on until its budget ends;
- ``memory``: holds HOSTILE_MB MiB of memory.
"""

import os
import sys
import time

import gym_remote.client as grc

mode = os.environ.get("HOSTILE_MODE", "")
env = grc.RemoteEnv("tmp/sock")
env.reset()
if mode == "fork":
    children = 0
    try:
        for _ in range(int(os.environ.get("HOSTILE_COUNT", "2000"))):
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
    except OSError as exc:
        print(f"fork refused after {children} children: {exc}", file=sys.stderr, flush=True)
        raise
elif mode == "out":
    block = os.urandom(1 << 20)
    with open(os.path.join(os.environ["CONTESTKIT_OUT_DIR"], "junk.bin"), "wb") as junk:
        for _ in range(int(os.environ.get("HOSTILE_MB", "2048"))):
            junk.write(block)
elif mode == "memory":
    hoard = [bytearray(1 << 20) for _ in range(int(os.environ.get("HOSTILE_MB", "1024")))]
elif mode == "stdout":
    line = ("x" * 1023 + "\n").encode()
    for _ in range(int(os.environ.get("HOSTILE_MB", "1024")) * 1024):
        sys.stdout.buffer.write(line)
    sys.stdout.buffer.write(b"the last line\n")
    sys.stdout.flush()
while True:
    _ob, _reward, done, _info = env.step(env.action_space.sample())
    if done:
        env.reset()
