"""The server log's job and level events: one line each, ``event=NAME key=value ...``.

Why: a host following ``contestkit server run`` (or grepping its journal) needs to see what the
queue does, not only HTTP access lines: which job was queued, started, which level finished with
what score or failed with what reason, which job was recovered after a restart. Every such line is
made here, so they share one shape that ``grep event=level.failed`` or any logfmt reader parses:
values that are not a bare word are JSON-quoted, absent values are left out, and the event name is
always the first field. They go through ``logging`` (logger ``contestkit.server.events``), so the
host's log configuration decides where they end up.
"""

from __future__ import annotations

import json
import logging
import re
from enum import Enum
from typing import Any

log = logging.getLogger("contestkit.server.events")

_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


class JobEvent(str, Enum):
    """What happened to a job or one of its levels; the value is the ``event=`` field."""

    QUEUED = "job.queued"
    STARTED = "job.started"
    FINISHED = "job.finished"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"
    RECOVERED = "job.recovered"  # its server died; queued again to resume
    REQUEUED = "job.requeued"  # this server is stopping; it resumes at the next start
    LEVEL_STARTED = "level.started"
    LEVEL_FINISHED = "level.finished"
    LEVEL_FAILED = "level.failed"
    LEVEL_CANCELLED = "level.cancelled"
    LEVEL_INTERRUPTED = "level.interrupted"  # stopped by a shutdown; runs again
    LEVEL_RETRYING = "level.retrying"  # the cluster could not start its pod; tried again after a backoff

    @property
    def severity(self) -> int:
        warn = (JobEvent.FAILED, JobEvent.LEVEL_FAILED, JobEvent.RECOVERED, JobEvent.LEVEL_RETRYING)
        return logging.WARNING if self in warn else logging.INFO


def format_event(event: JobEvent, fields: dict[str, Any]) -> str:
    """``event=NAME key=value ...``: None values left out, floats rounded, anything not a bare word quoted."""
    parts = [f"event={event.value}"]
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, float):
            value = round(value, 4)
        text = str(value)
        parts.append(f"{key}={text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)}")
    return " ".join(parts)


def emit(event: JobEvent, **fields: Any) -> None:
    """Log one event line (never raises: a log line must not fail a job)."""
    try:
        log.log(event.severity, "%s", format_event(event, fields))
    except Exception:  # noqa: BLE001
        log.exception("could not log event %s", event.value)
