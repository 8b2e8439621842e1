"""The self-hosted contest server: teams, logins, a job queue that evaluates pushed agent images.

The 2018 contest server no longer exists, so contestkit ships the other side of ``contestkit
submit``: a FastAPI application that speaks the 2018 client's REST paths and JSON shapes, keeps its
state in SQLite (or PostgreSQL), and evaluates each job's image on the configured level set.

Layout of the package, grouped by concern (``docs/architecture-server.md`` names every module):

- ``api/``: the HTTP API's routers, their shared dependencies (``api.deps``), the JSON documents and
  the OpenAPI description; ``web/``: the browser pages;
- ``contest/``: the contest's rules: phases, teams and their names, quotas, leaderboards, the final,
  baselines, the host's controls;
- ``queue/``: jobs: the queue in the database, what a team's requests do to its jobs, scheduling,
  seeds and what one level-run may take;
- ``executors/``: the engines that run a level-run behind one interface (Docker, Kubernetes, a function);
- ``security/``: logins, sessions and tokens, throttling, request limits, registry tokens, downloads;
- ``storage/``: the tables and the versioned schema upgrades; ``deployment/``: the data directory,
  Kubernetes manifests and the supervised registry;
- ``config``, ``errors``, ``events``, ``metrics``: ``server.yaml``, the refusals by kind, the event
  log lines, ``/metrics``; ``app``: builds the services and assembles the routers (``create_app``),
  and runs them (``serve``).

Database sessions are SQLAlchemy ``Session`` objects, named ``db`` (``with database.session() as db``);
"session" on its own means a team's login session.
"""
