"""Keep the garbage collector's full passes short in the API process.

Why: CPython's oldest-generation collection walks every tracked object, and after start-up the
server holds about 106,000 of them (FastAPI's routes and models, SQLAlchemy's mappers, pydantic's
validators) that live as long as the process. Each full pass over them took 100-200 ms on the
loaded 2-core VM (2026-12-06), and for that long the event loop answers no one: a stall every
connection sees, part of the leaderboard's tail at 200 connections. Moving what start-up made to
the permanent generation (``gc.freeze``) leaves the passes only what requests create.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then exempt every object alive now from later collections; how many that is."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
