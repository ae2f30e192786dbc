"""One deploy at a time: a PostgreSQL session advisory lock, or flock on a file beside SQLite.

The lock is the database's, not the path's: PostgreSQL's advisory locks belong to one database of
one server, however a client names them; SQLite's lock file is named by the database file's
device and inode (lock_path_for), so a symlink to the same file takes the same lock.

The holder is published with the lock (the lock session's application_name; the lock file's
content), so a deploy that finds it taken names the one that holds it even before that one
has written its DeployRecord.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import IO, Any

from django.db import DatabaseError, connections
from django.utils import timezone

from deployguard.deploy import record
from deployguard.deploy.steps import EXIT_PRECHECK, Stop
from deployguard.ownership import ADVISORY_LOCK_KEY, lock_path_for, mark_held, postgresql_lock_holder

ANOTHER_DEPLOY = "Another deploy_safe is running ({who}); wait for it to finish. Nothing was touched."


class DeployLock:
    """The lock, held from acquire() to release() (the end of the process, at the latest)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._handle: Any = None

    def acquire(self, deploy_id: str = "", actor: str = "") -> bool:
        connection = connections[self.using]
        if connection.vendor == "postgresql":
            # Its own session: restoring closes Django's connection, which would drop the lock.
            raw = connection.get_new_connection(connection.get_connection_params())
            raw.autocommit = True
            with raw.cursor() as cursor:
                # Named before the lock is tried, so there is no moment it is held anonymously.
                cursor.execute(
                    "SELECT set_config('application_name', %s, false)",
                    [f"deploy_safe {deploy_id} {actor}"[:63]],
                )
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
                (taken,) = cursor.fetchone()
            if not taken:
                raw.close()
                return False
            self._handle = raw
            mark_held(self.using, True)
            return True
        handle: IO[str] = open(self._lock_path(), "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"deploy {deploy_id}, started {timezone.now():%Y-%m-%d %H:%M:%S} by {actor}")
        handle.flush()
        self._handle = handle
        mark_held(self.using, True)
        return True

    def _lock_path(self) -> Path:
        return lock_path_for(str(connections[self.using].settings_dict["NAME"]))

    def holder(self) -> str:
        """Who holds the lock, as "deploy ID, started WHEN by WHO", or "" when that is unknown."""
        connection = connections[self.using]
        with contextlib.suppress(DatabaseError, OSError, ValueError):
            if connection.vendor != "postgresql":
                return self._lock_path().read_text().strip()
            return postgresql_lock_holder(self.using)[1]
        return ""

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(Exception):
                if not hasattr(self._handle, "cursor"):  # the lock file: it names nobody once released
                    self._handle.truncate(0)
                else:  # unlocked before the session ends: its end reaches the server asynchronously
                    self._handle.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
                self._handle.close()
            self._handle = None
            mark_held(self.using, False)


def take(lock: DeployLock, *, deploy_id: str, actor: str) -> None:
    """Acquire the lock, or stop the run (exit 3) naming the deploy that holds it."""
    if not lock.acquire(deploy_id, actor):
        raise Stop(EXIT_PRECHECK, ANOTHER_DEPLOY.format(who=running_deploy(lock)))


def running_deploy(lock: DeployLock) -> str:
    """The deploy that holds the lock: its record's account, or, still in its pre-checks (no
    record yet), the lock's."""
    with contextlib.suppress(DatabaseError):
        running = record.running_record(using=lock.using)
        if running:
            return (
                f"deploy {running.deploy_id}, started {running.started_at:%Y-%m-%d %H:%M:%S} "
                f"by {running.started_by}"
            )
    return lock.holder() or "it holds the deploy lock"
