"""Deploy mode belongs to the deploy that holds the deploy lock, while it runs.

Switching deploy mode off while deploy_safe runs would let writes land that its post-check then
finds and its restore erases, though each was acknowledged to its user. So state.disable() asks
refuse_switch_off() first: the command, the endpoint, the admin page and any code the migrate
subprocess runs are refused while another process holds the deploy lock, with the deploy named
and the way out (`deploy_safe --recover` when its process is gone). `deploy_mode off --force` is the
one override, explicit and logged. The deploy's own process (which took the lock) is not refused.

The lock is the database's own (deployguard.deploy.lock takes it): PostgreSQL's session advisory
lock ADVISORY_LOCK_KEY in this database, or flock on the SQLite file's lock_path_for(). This
module only looks at it; it imports nothing of deployguard's, so state.py can ask it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
from pathlib import Path

from django.db import DatabaseError, connections

logger = logging.getLogger("deployguard")

ADVISORY_LOCK_KEY = 0x6465_706C_6F79  # "deploy"
HELD = (
    "Deploy mode belongs to the running deploy ({holder}): switching it off is refused while that "
    "deploy runs. Let it finish; if its process is gone, run `manage.py deploy_safe --recover`. To "
    "override knowingly (writes may then land that the deploy's checks will find): "
    "`manage.py deploy_mode off --force --reason TEXT`, which is logged."
)
FORCED = "FORCED off while {holder} held it: {reason}"

_held_here: set[str] = set()
"""Aliases whose deploy lock this process holds (deploy.lock.DeployLock marks them)."""


class DeployModeHeld(Exception):
    """Switching deploy mode off was refused: a running deploy holds it."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(HELD.format(holder=holder))


def mark_held(using: str, held: bool) -> None:
    """deploy.lock: this process took (or released) the deploy lock of `using`."""
    if held:
        _held_here.add(using)
    else:
        _held_here.discard(using)


def lock_path_for(database: str) -> Path:
    """SQLite: the lock file of the database file `database`, named by the file's identity (its
    device and inode) beside the file itself, symlinks resolved: every path to the same file,
    through symlinks or hard links in the same directory, takes the same lock. A database not
    created yet is named by its path until it is."""
    path = Path(database)
    try:
        real = path.resolve(strict=True)
        identity = real.stat()
    except OSError:
        return path.with_name(path.name + ".deploy.lock")
    return real.with_name(f".{real.name}.{identity.st_dev}-{identity.st_ino}.deploy.lock")


def deploy_holding(using: str = "default") -> str:
    """The deploy another process runs on this database (the deploy lock's holder), described;
    "" when none does, or when this process is that deploy."""
    if using in _held_here:
        return ""
    connection = connections[using]
    if connection.vendor == "postgresql":
        held, holder = postgresql_lock_holder(using)
        return (holder or "a deploy holds the deploy lock") if held else ""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return ""
    try:
        handle = open(lock_path_for(str(connection.settings_dict["NAME"])))
    except OSError:  # no lock file: no deploy ever took the lock here
        return ""
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read(500).strip() or "a deploy holds the deploy lock"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return ""


def postgresql_lock_holder(using: str) -> tuple[bool, str]:
    """PostgreSQL: whether a session holds the deploy lock in this database, and the deploy it
    names ("deploy ID, started WHEN by WHO", or "" when it names none)."""
    with contextlib.suppress(DatabaseError), connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s",
            [ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFF_FFFF],
        )
        row = cursor.fetchone()
        if row is None:
            return False, ""
        if row[0].startswith("deploy_safe "):
            _, deploy_id, actor = [*row[0].split(" ", 2), ""][:3]
            started = row[1].astimezone(datetime.UTC)  # as DeployRecord.started_at is shown
            return True, f"deploy {deploy_id}, started {started:%Y-%m-%d %H:%M:%S} by {actor or '?'}"
        return True, ""
    return False, ""


def refuse_switch_off(*, using: str, force: bool, changed_by: str, reason: str) -> str:
    """Before deploy mode goes off: raise DeployModeHeld while another process's deploy holds it;
    with `force`, log the override and return the reason to record instead of `reason`."""
    holder = deploy_holding(using)
    if not holder:
        return reason
    if not force:
        raise DeployModeHeld(holder)
    logger.warning("Deploy mode FORCED off by %s while %s held it: %s", changed_by, holder, reason)
    return FORCED.format(holder=holder, reason=reason)
