"""A hostile agent for the display-safety test: it prints terminal escapes (clear screen, an OSC 52
clipboard write, a title change, a right-to-left override) on stdout and stderr, then crashes."""

import sys

import numpy as np

from contestkit.bridge.client import RemoteEnv

HOSTILE = "\x1b[2J\x1b]52;c;ZXZpbA==\x07\x1b]0;owned\x07\u202eevil"

print(f"hello {HOSTILE}", flush=True)
env = RemoteEnv("tmp/sock")
env.reset()
for _ in range(5):
    env.step(np.zeros(12, np.int8))
print(f"crashing {HOSTILE}", file=sys.stderr, flush=True)
raise SystemExit(f"boom {HOSTILE}")
