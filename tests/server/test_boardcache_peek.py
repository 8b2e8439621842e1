"""The leaderboard's cache on the event loop: when a check is due, one request is sent to a thread
to make it, and every other request is answered the board as it was, at once (issue 28: the
requests that all went to worker threads during a check held /rest/leaderboard's p99 at 2.5 s)."""

from __future__ import annotations

from contestkit.server.contest.boardcache import BoardCache


def test_one_request_checks_the_others_get_the_board_as_it_was(offline_contest):
    builds: list[int] = []

    def build(_db) -> bytes:  # type: ignore[no-untyped-def]
        builds.append(1)
        return f"board {len(builds)}".encode()

    cache = BoardCache(offline_contest.database, build, max_age=0.0, recheck=0.0)  # a check always due
    assert cache.peek() is None  # nothing built yet: everyone waits for the first build
    assert cache.peek() is None
    assert cache.get() == b"board 1"
    assert cache.peek() is None  # a check is due: this caller makes it (on a thread, in the app)
    assert cache.peek() == b"board 1"  # the others, meanwhile: the board as it was, no thread
    assert cache.peek() == b"board 1"
    assert cache.get() == b"board 2"  # max_age 0: the check rebuilds
    assert cache.peek() is None  # the claim ended with get(): the next due check is claimed again


def test_a_claim_whose_caller_never_checked_expires(offline_contest, monkeypatch):
    """A request told to check can be cancelled before its thread runs: the board must not then
    stay unchecked for good."""
    from contestkit.server.contest import boardcache

    cache = BoardCache(offline_contest.database, lambda _db: b"board", max_age=60.0, recheck=0.0)
    assert cache.get() == b"board"
    assert cache.peek() is None  # claimed, and (say) cancelled: get() is never called
    assert cache.peek() == b"board"
    monkeypatch.setattr(boardcache, "CLAIM_EXPIRY", 0.0)
    assert cache.peek() is None  # the stale claim is taken again
