"""Errors users can act on.

Library code raises these with one sentence that says what was wrong and what to do; the CLI
prints that sentence and exits non-zero, so users never see a traceback for their own mistakes.
"""

from __future__ import annotations


class ContestkitError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message shown to them."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        if not message:
            raise ValueError("ContestkitError needs a message users can act on")
        super().__init__(message)


class UsageError(ContestkitError):
    """Bad input on the command line or in a file (exit status 2, like a usage error)."""

    exit_code = 2


class NotFoundError(ContestkitError):
    """A named thing (game, state, image, job) does not exist."""

    exit_code = 2
