"""What waking the other side of the bridge costs on this machine.

Why this exists: each timestep, the agent sleeps in ``recv`` while the env steps, and the env's
reply must wake it. On a virtual machine, waking a process that sleeps on another, idle CPU is an
interrupt the hypervisor delivers, and costs tens of microseconds (57 us on the development VM,
5% of a timestep); on the same CPU it is a context switch (11 us). No blocking bridge can beat
this floor, so ``bench/bridge.py`` reports it next to the bridge's own figure, and ``contestkit
doctor`` measures it to say whether ``--cpuset`` pays off here.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import time

MESSAGE = 16  # bytes each way, the size of the bridge's reply header


def _echo(sock: socket.socket, n: int) -> None:
    buf = bytearray(MESSAGE)
    for _ in range(n):
        sock.recv_into(buf)
        sock.sendall(buf)


def round_trip(busy_seconds: float, n: int = 300, cpu: int | None = None) -> float:
    """Median seconds of one blocking round trip, the answering process idle ``busy_seconds`` first.

    The caller plays the env (busy for ``busy_seconds``, then sends and waits) and a forked
    process plays the agent (blocked in ``recv`` all that time, then answers at once), over a
    unix stream socket like the bridge's. With ``cpu``, both run on that one CPU (Linux only);
    the caller's own CPU affinity is restored afterwards.
    """
    saved = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # the forked process inherits it
    ours, theirs = socket.socketpair()
    try:
        proc = multiprocessing.get_context("fork").Process(target=_echo, args=(theirs, n), daemon=True)
        proc.start()
        msg, buf = bytes(MESSAGE), bytearray(MESSAGE)
        clock, busy_ns, trips = time.perf_counter_ns, int(busy_seconds * 1e9), []
        for _ in range(n):
            until = clock() + busy_ns
            while clock() < until:
                pass
            t0 = clock()
            ours.sendall(msg)
            ours.recv_into(buf)
            trips.append(clock() - t0)
        proc.join(timeout=30)
    finally:
        ours.close()
        theirs.close()
        if saved is not None:
            os.sched_setaffinity(0, saved)
    return statistics.median(trips) / 1e9
