"""Errors users can act on, and the exit status each kind of ending gives.

Library code raises these with one sentence that says what was wrong and what to do; the CLI
prints that sentence and exits with the error's ``exit_code``, so users never see a traceback for
their own mistakes. One rule for every command, so scripts can tell "I typed it wrong" from "it
ran and failed":

* :data:`EXIT_USAGE` (2): the command cannot run as typed: a bad or missing argument or option, an
  unknown name, a malformed file named on the command line (``--levels``) or a settings file
  (``contestkit.yaml``, ``server.yaml``: see :mod:`contestkit.yamlconfig`), a target that already
  exists, or run outside an agent project. Nothing was changed. Click's own parse errors give the
  same status.
* :data:`EXIT_FAILURE` (1): it ran and failed (an evaluation, a build, an engine or server that
  refused or did not answer).
* :data:`EXIT_INTERRUPTED` (130): stopped with Ctrl-C, as shells report SIGINT.
* :data:`EXIT_TERMINATED` (143): stopped by SIGTERM (``timeout``, a process manager), as shells
  report it; ``eval`` stops and keeps what finished exactly as for Ctrl-C.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: The rule above in one line, for ``contestkit --help`` and the README.
EXIT_STATUS_RULE = (
    f"Exit status: 0 success, {EXIT_USAGE} usage error (nothing changed), {EXIT_FAILURE} failure, "
    f"{EXIT_INTERRUPTED} interrupted (Ctrl-C), {EXIT_TERMINATED} terminated (SIGTERM)."
)


class ContestkitError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message shown to them."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        if not message:
            raise ValueError("ContestkitError needs a message users can act on")
        super().__init__(message)


class UsageError(ContestkitError):
    """The command cannot run as typed: bad input on the command line or in a file it names."""

    exit_code = EXIT_USAGE


class NotFoundError(ContestkitError):
    """A named thing (game, state, image, job) does not exist."""

    exit_code = EXIT_USAGE
