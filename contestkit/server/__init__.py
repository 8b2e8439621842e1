"""The self-hosted contest server: teams, sessions, a job queue that evaluates pushed agent images.

The 2018 contest server no longer exists, so contestkit ships the other side of ``contestkit
submit``: a FastAPI application that speaks the 2018 client's REST paths and JSON shapes, keeps its
state in SQLite (or PostgreSQL), and evaluates each job's image on the configured level set.

Layout of the package, each module small enough to read in one go:

- ``config``: the data directory (``server.yaml``, ``levels.csv``, the registry's keys and config);
- ``db`` and ``migrations``: the tables and the versioned schema upgrades;
- ``auth``: slow password hashes, expiring sessions and bearer tokens;
- ``registry_auth`` and ``registry_api``: the registry's token issuer (grants, signed tokens, the realm);
- ``teams``: creating teams and their registry accounts;
- ``evaluator``: the one call that evaluates a level, swappable for a host's own evaluator;
- ``jobs``: the queue, the worker threads, crash recovery, scores and the leaderboard;
- ``app``: the HTTP API.
"""
