"""Real Prefect servers for the deployments tests start from the database of one that has started before: migrating
a fresh one and registering its block types takes longer than the rest of a start (on a loaded 2-core machine, 80 s
against 30 s)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def migrated_database(pytestconfig: pytest.Config) -> Path:
    """The database of a Prefect server that has started once (migrated, its block types registered), kept in
    pytest's cache per Prefect version."""
    import prefect

    from deployments.prefect_server import LocalPrefectServer
    from tests.conftest import free_port

    directory = pytestconfig.cache.mkdir(f"prefect-{prefect.__version__}-sqlite")
    database = directory / "prefect.db"
    if not database.is_file():
        work = directory / f"starting-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        server = LocalPrefectServer(work, port=free_port())
        try:
            server.start(timeout=300)
        finally:
            server.stop()
        # whatever is still in SQLite's write-ahead log goes into the file that is copied
        connection = sqlite3.connect(work / "prefect.db")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        (work / "prefect.db").replace(database)  # atomic: a concurrent session sees all of it or nothing
        shutil.rmtree(work, ignore_errors=True)
    return database


@pytest.fixture(scope="session")
def prefect_home(migrated_database: Path) -> Callable[[Path], Path]:
    """Make ``path`` a ``PREFECT_HOME`` holding a copy of the migrated database; returns it."""

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database, path / "prefect.db")
        return path

    return make
