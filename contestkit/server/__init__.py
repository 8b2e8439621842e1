"""The self-hosted contest server: teams, logins, a job queue that evaluates pushed agent images.

The 2018 contest server no longer exists, so contestkit ships the other side of ``contestkit
submit``: a FastAPI application that speaks the 2018 client's REST paths and JSON shapes, keeps its
state in SQLite (or PostgreSQL), and evaluates each job's image on the configured level set.

Layout of the package, one concern per module, each small enough to read in one go:

- ``config``: the data directory (``server.yaml``, ``levels.csv``, the registry's keys and config);
- ``db`` and ``migrations``: the tables and the versioned schema upgrades;
- ``auth``: slow password hashes, expiring login sessions and bearer tokens;
- ``admin``: creating contests and teams and their registry accounts (``contestkit server ...``);
- ``registry_auth`` and ``registry_api``: the registry's token issuer (grants, signed tokens, the realm);
- ``operations``: what a team's requests do to its jobs (start, cancel, restart, read) and the leaderboard;
- ``documents``: the JSON shapes of jobs, levels and leaderboard rows;
- ``queue``: the queue in the database (claim, heartbeat, level results, finishing, crash recovery);
- ``scheduling``: where and when a level runs (parallel jobs and levels, CPU sets, watchdog);
- ``executors``: the engines that run a level-run behind one interface (``docker``, a ``function``);
- ``errors``: the refusals (not found, conflict...), which ``app`` alone maps to HTTP statuses;
- ``app``: the HTTP API.

Database sessions are SQLAlchemy ``Session`` objects, named ``db`` (``with database.session() as db``);
"session" on its own means a team's login session.
"""
