"""Speaks something other than the bridge protocol."""

import socket

s = socket.socket(socket.AF_UNIX)
for _ in range(500):
    try:
        s.connect("tmp/sock/ctl")
        break
    except OSError:
        import time

        time.sleep(0.02)
s.sendall(b'{"op": "step", "action": [1,0,0]}\n')
print(s.recv(100))
