"""Where the checkout is, and the level every quick test plays (the one ROM stable-retro ships)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
AGENTS = REPO / "tests" / "agents"
GAME, STATE = "Airstriker-Genesis", "Level1"
PASSWORD = "correct horse battery"  # every test team's (long enough for the server's rule)
FAKE_EVALUATOR = "tests.server.fake_level_runner:fake_level_runner"
REQUIRE_DOCKER_ENV = "CONTESTKIT_REQUIRE_DOCKER"
