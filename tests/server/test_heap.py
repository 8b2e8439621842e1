"""The API process moves what start-up made out of the garbage collector's full passes (``heap``):
a full pass over the server's ~100,000 start-up objects stalled the event loop for 100-200 ms."""

from __future__ import annotations

import asyncio
import gc


def test_serving_freezes_the_startup_heap(offline_contest):
    from contestkit.server.app import create_app

    gc.unfreeze()
    try:

        async def frozen_while_serving() -> int:
            app = create_app(offline_contest.data_dir, start_scheduler=False)
            async with app.router.lifespan_context(app):
                return gc.get_freeze_count()

        assert asyncio.run(frozen_while_serving()) > 10_000  # the app's routes, models, mappers
    finally:
        gc.unfreeze()  # this test process goes on collecting as before
