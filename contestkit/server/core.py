"""The parts of a contest server that run once per data directory, however many processes serve its API.

Why a home of its own: ``server run`` serves the API from one process (the core runs inside it,
started and stopped by the app's lifespan) or, with ``--workers N``, from N worker processes while
the core runs in the parent (``serving``). Both go through this class, so the scheduler, the
housekeeping sweeper, the phase announcement and the registry's supervisor start and stop in one
order in one place. With workers the core also publishes its executor's and registry's state
(``core_status``), listens for the workers' doorbell (``queue/doorbell``) and moves the shared write
mark the leaderboard caches read (``storage/writemark``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from contestkit.server import core_status
from contestkit.server.config import ServerConfig
from contestkit.server.contest import boardcache
from contestkit.server.contest import overview as contest
from contestkit.server.deployment.registry_supervision import RegistryProbe, RegistrySupervisor
from contestkit.server.executors import Executor
from contestkit.server.queue.doorbell import Doorbell
from contestkit.server.queue.scheduling import Scheduler
from contestkit.server.security import housekeeping, registry_auth
from contestkit.server.storage.db import Database, now
from contestkit.server.storage.migrations import migrate

log = logging.getLogger("contestkit.server")


def upgrade_data_dir(config: ServerConfig, database: Database) -> None:
    """Before a server serves: the database's schema migrations, and a data directory made for
    htpasswd upgraded to registry tokens. Once per start, before any API process opens them."""
    migrate(database)
    for note in registry_auth.prepare_data_dir(config):
        log.warning("%s", note)


class Core:
    """The scheduler, the sweeper and (``registry_supervisor``) the team registry of one server."""

    def __init__(
        self,
        config: ServerConfig,
        database: Database,
        executor: Executor,
        *,
        registry_supervisor: RegistrySupervisor | None = None,
        start_scheduler: bool = True,
    ) -> None:
        self.config, self.database = config, database
        self.scheduler = Scheduler(database, config, executor)
        self.sweeper = housekeeping.Sweeper(database, config.sweep_seconds)
        self.registry_supervisor = registry_supervisor
        self.start_scheduler = start_scheduler
        self._publisher: core_status.Publisher | None = None
        self._doorbell: Doorbell | None = None

    def start(self, *, for_workers: bool = False) -> None:
        """Start everything; ``for_workers``: also what API worker processes read (status, doorbell, mark)."""
        contest.announce(self.database, self.config, log, now())
        if for_workers:
            boardcache.share_writes(Path(self.config.data_dir))
            self._doorbell = Doorbell(Path(self.config.data_dir), self.scheduler.look).start()
        if self.start_scheduler:
            self.scheduler.start()
        self.sweeper.start()
        if for_workers:
            probe = RegistryProbe(self.config, cache_seconds=0)  # the publisher's 2 s are the workers' cache
            self._publisher = core_status.Publisher(
                Path(self.config.data_dir), self.scheduler.executor, probe, self.registry_supervisor
            ).start()

    def stop(self) -> None:
        """Stop in reverse: running jobs are put back in the queue for the next start."""
        if self._publisher is not None:
            self._publisher.stop()
        if self._doorbell is not None:
            self._doorbell.stop()
        self.sweeper.stop()
        if self.start_scheduler:
            self.scheduler.stop()
        if self.registry_supervisor is not None:
            self.registry_supervisor.stop()
