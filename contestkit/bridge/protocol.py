"""Wire format of the bridge between the env process and the agent.

The two sides meet in one directory (``tmp/sock`` for the agent; in Docker a tmpfs volume both
containers mount) holding two files:

* ``ctl``: a unix stream socket carrying fixed-size binary control messages;
* ``obs``: a file both sides memory-map, into which the env writes each observation.

Why this shape: the 2018 bridge sent JSON over the socket and cost 16-30% of a timestep. Here a
step is one 4+N-byte request and one 16-byte reply, packed and parsed with precompiled
``struct`` objects into buffers allocated once; the observation never crosses the socket; and
the blocking ``recv`` is the wake-up, so neither side polls.

Session:

1. agent connects and sends ``MAGIC``;
2. env answers a reply header with status OK and a JSON payload (:class:`Hello`);
3. then any number of requests ``op u8 | pad u8*3 | action u8*N`` (N = number of buttons), each
   answered by a reply header ``status u8 | terminated u8 | truncated u8 | pad | payload_len u32
   | reward f64`` followed by ``payload_len`` bytes of JSON (the info dict, or an error message).
"""

from __future__ import annotations

import json
import os
import socket
import struct
from dataclasses import asdict, dataclass, field, fields
from enum import Enum

MAGIC = b"CKB1"
CTL_NAME = "ctl"
OBS_NAME = "obs"

OP_RESET = 1
OP_STEP = 2
OP_CLOSE = 3

OK = 0
ERR_TIMESTEP_BUDGET = 10
ERR_WALLCLOCK = 11
ERR_RESET = 12
ERR_BAD_REQUEST = 13
ERR_ENV = 14


class Fault(str, Enum):
    """Whose doing an end of session was: what decides the exit status and the error shown."""

    NONE = "none"  # a normal end: the agent closed, or the session was stopped
    BUDGET = "budget"  # a budget ran out: the contest's normal end
    AGENT = "agent"  # the agent broke the protocol or never came
    ENV = "env"  # the env side failed (emulator, setup)


class EndReason(str, Enum):
    """How a session ended, as remote-status.json and summary.json write it (the value strings)."""

    fault: Fault

    def __new__(cls, value: str, fault: Fault) -> EndReason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.fault = fault
        return member

    def __str__(self) -> str:
        return str(self.value)

    AGENT_CLOSED = "agent-closed", Fault.NONE
    STOPPED = "stopped", Fault.NONE  # the env program was asked to stop (SIGTERM, Ctrl-C)
    INTERRUPTED = "interrupted", Fault.NONE  # the evaluation was interrupted (written by eval)
    TIMESTEP_BUDGET = "timestep-budget", Fault.BUDGET
    WALLCLOCK_BUDGET = "wallclock-budget", Fault.BUDGET
    BAD_REQUEST = "bad-request", Fault.AGENT
    AGENT_DISCONNECTED = "agent-disconnected-mid-step", Fault.AGENT
    NO_CONNECTION = "no-connection", Fault.AGENT
    ENV_ERROR = "env-error", Fault.ENV
    SETUP_ERROR = "setup-error", Fault.ENV  # unknown level, missing ROM: before any session

    @classmethod
    def read(cls, value: object) -> EndReason | None:
        """The reason a status file names, or None when it names none (or one this version does not know)."""
        try:
            return cls(value)
        except ValueError:
            return None


REQUEST_HEADER = 4
REPLY = struct.Struct("<BBBxId")


@dataclass
class Hello:
    """What the env tells the agent once, at connection time."""

    game: str
    state: str
    buttons: list[str]
    obs_shape: list[int]
    obs_dtype: str = "uint8"
    obs_file: str = OBS_NAME
    timestep_limit: int = 0
    wallclock_limit: float = 0.0
    protocol: int = 1
    extra: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        """Fields this client does not know are ignored: a newer env can talk to an older agent image."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(payload).items() if k in known})


def memory_tmpdir() -> str | None:
    """A directory on a memory filesystem for the bridge, or None for the system default.

    The observation file is written every step through a shared mapping; on a disk filesystem
    the kernel tracks and writes back those dirty pages, which costs more than the rest of the
    bridge together. /dev/shm is tmpfs on Linux (Docker gives the bridge a tmpfs volume).
    """
    candidate = "/dev/shm"
    if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
        return candidate
    return None


def recv_exact(sock: socket.socket, view: memoryview) -> bool:
    """Fill ``view`` from the socket; False on a clean EOF before the first byte.

    Raises ``ConnectionError`` when the peer goes away half-way through a message.
    """
    got = 0
    size = len(view)
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got == 0:
                return False
            raise ConnectionError(f"peer closed the bridge after {got} of {size} bytes of a message")
        got += n
    return True
