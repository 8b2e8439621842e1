"""The self-hosted contest server: teams, logins, a job queue that evaluates pushed agent images.

The 2018 contest server no longer exists, so contestkit ships the other side of ``contestkit
submit``: a FastAPI application that speaks the 2018 client's REST paths and JSON shapes, keeps its
state in SQLite (or PostgreSQL), and evaluates each job's image on the configured level set.

Layout of the package, one concern per module, each small enough to read in one go:

- ``config``: the data directory (``server.yaml``, ``levels.csv``, the registry's keys and config);
- ``db`` and ``migrations``: the tables and the versioned schema upgrades;
- ``auth``: slow password hashes, expiring login sessions and bearer tokens;
- ``admin``: creating a contest's data directory (``contestkit server init``);
- ``teams``: adding teams, their passwords and registry accounts, and the host's controls over them;
- ``hosting``: the host's controls over jobs and the contest, and the record of host actions;
- ``registry_auth``: the registry's token issuer (grants, signed tokens);
- ``operations``: what a team's requests do to its jobs (create, start, cancel, restart, read);
- ``leaderboards``, ``final``, ``phases``: the rankings, the hidden final, the contest's phases;
- ``documents``: the JSON shapes of jobs, levels and the leaderboard (the pydantic models);
- ``queue``: the queue in the database (claim, heartbeat, level results, finishing, crash recovery);
- ``scheduling``: where and when a level runs (parallel jobs and levels, CPU sets, watchdog);
- ``executors``: the engines that run a level-run behind one interface (``docker``, a ``function``);
- ``errors``: the refusals (not found, conflict...), which ``api.errors`` alone maps to HTTP statuses;
- ``api``: the HTTP API's routers and their shared dependencies (``api.deps``); ``pages``: the browser pages;
- ``app``: builds the services and assembles the routers (``create_app``), and runs them (``serve``).

Database sessions are SQLAlchemy ``Session`` objects, named ``db`` (``with database.session() as db``);
"session" on its own means a team's login session.
"""
