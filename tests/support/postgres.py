"""A throwaway PostgreSQL cluster in a temporary directory, started from Debian's binaries.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user that Debian's
package creates."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.commands import find_free_port


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


class PostgresCluster:
    """``start()`` gives a base URL (``postgresql+psycopg://postgres@127.0.0.1:PORT``); ``stop()``
    ends the server and removes its files. Skips loudly where PostgreSQL or psycopg is missing."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="contestkit-pg-"))  # pytest's base temp is private to root
        self.base.chmod(0o755)
        self.port = find_free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def start(self) -> str:
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        if not initdb or not postgres:
            pytest.skip("POSTGRES TESTS SKIPPED: PostgreSQL is not installed (apt-get install postgresql)")
        try:
            import psycopg
        except ImportError:
            pytest.skip("POSTGRES TESTS SKIPPED: the psycopg driver is not installed (pip install 'psycopg[binary]')")
        data, sockets = self.base / "pgdata", self.base / "sock"
        sockets.mkdir(parents=True)
        prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("POSTGRES TESTS SKIPPED: running as root without runuser to drop to the postgres user")
            prefix = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.base, "postgres")
            shutil.chown(sockets, "postgres")
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        log = self.base / "postgres.log"
        self.proc = subprocess.Popen(
            [
                *prefix,
                postgres,
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],  # fmt: skip
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:  # polls until the server accepts a connection
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=1).close()
                return self.url
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)
