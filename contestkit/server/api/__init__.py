"""The HTTP API as FastAPI routers, one module per group of routes, and what they share.

- ``deps``: the dependencies every route group (and the browser pages) shares: who is asking, the
  server's services (database, config, scheduler...), signing in and out, cancelling and restarting;
- ``errors``: the one place where a refusal becomes an HTTP status and a ``{"detail": ...}`` answer;
- ``sessions``: ``/rest/login``, ``/rest/logout``, tokens and ``/rest/user``;
- ``jobs``: ``/rest/job/...`` (start, status, kill, restart);
- ``board``: the public leaderboard; ``final``: choosing a submission and the final leaderboard;
- ``health``: ``/rest/health`` and ``/metrics``;
- ``admin``, ``registry``, ``results``: the host's API, the registry's realm, a job's files.

``contestkit.server.app.create_app`` builds the services and assembles these routers.
"""
