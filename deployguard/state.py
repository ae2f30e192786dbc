"""The deploy-mode switch: the one reader of the shared state, and the functions that flip it.

Every process reads the state row in deployguard's table and trusts what it read for
DEPLOYGUARD_STATE_CACHE_SECONDS; the functions that flip the switch wait that long (and
then for transactions that wrote before the switch) so that, once they return, the very
next write in any process sees the new state.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import math
import os
import socket
import time
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from deployguard import conf, freeze, ownership
from deployguard.allowances import own_records, own_records_allowed
from deployguard.exceptions import DeployModeAlreadyOn, DrainTimeout
from deployguard.status import ENVIRONMENT_VARIABLE, DeployModeStatus

logger = logging.getLogger("deployguard")

# deployguard.models is imported inside the functions that use it: this module loads with
# the package itself (deployguard.is_deploy_mode), before Django's app registry can load models.

TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
FALSE_VALUES = frozenset({"false", "0", "no", "off", ""})
UNPARSABLE_ENVIRONMENT = (
    "{variable}={value!r} is neither true nor false: set it to true (deploy mode on for this "
    "process) or false, or unset it. Accepted: {accepted}."
)
REASON_REQUIRED = "Give a reason for turning deploy mode on: it is shown to everyone whose write is refused."

FORCED_BY_ENVIRONMENT = DeployModeStatus(enabled=True, source="environment")
NOT_INSTALLED = DeployModeStatus(enabled=False, source="not-installed")
NEVER_SWITCHED = DeployModeStatus(enabled=False, source="database")

_cache: tuple[float, DeployModeStatus] | None = None
_forced_for_process: DeployModeStatus | None = None
_table_seen: set[tuple[str, str]] = set()


# The switch's own rows are protected by the guard while deploy mode is on (a start-up hook
# or data migration must not turn it off for everyone); only enable() and disable() write them
# (and deployguard's other own records only its own code: allowances.own_records()).


def _writing_the_switch() -> contextlib.AbstractContextManager[None]:
    return own_records("the deploy-mode switch")


def switch_writes_allowed() -> bool:
    """True inside enable() and disable() (or deployguard's own code writing its own records):
    the only code that may write deployguard's records in deploy mode."""
    return own_records_allowed()


def parse_environment(value: str) -> bool:
    """DEPLOYMENT_MODE's value as a boolean; ImproperlyConfigured when it is neither."""
    normalised = value.strip().lower()
    if normalised in TRUE_VALUES:
        return True
    if normalised in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(
        UNPARSABLE_ENVIRONMENT.format(
            variable=ENVIRONMENT_VARIABLE,
            value=value,
            accepted=", ".join(sorted(TRUE_VALUES | FALSE_VALUES - {""})),
        )
    )


def check_environment() -> None:
    """Stop start-up when DEPLOYMENT_MODE is set to something that is not a boolean."""
    parse_environment(os.environ.get(ENVIRONMENT_VARIABLE, ""))


def _forced_by_environment() -> bool:
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if not value:
        return False
    try:
        return parse_environment(value)
    except ImproperlyConfigured:
        return True  # changed after start-up to something unreadable: fail closed


def current() -> DeployModeStatus:
    """The deploy-mode state as this process sees it now. The one reader of the state.

    Both sources, DEPLOYMENT_MODE and the shared row, are read again once the cache has
    expired (reading the environment costs as much as the rest of a cached check).
    """
    if _forced_for_process is not None:
        return _forced_for_process
    cached = _cache
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    status = FORCED_BY_ENVIRONMENT if _forced_by_environment() else _read()
    if status.source != "unreadable":
        _remember(status)
    return status


def is_deploy_mode() -> bool:
    """True while deploy mode is on for this process, or when its state cannot be read."""
    return current().enabled


def _remember(status: DeployModeStatus, seconds: float | None = None) -> None:
    global _cache
    ttl = float(conf.get("DEPLOYGUARD_STATE_CACHE_SECONDS")) if seconds is None else seconds
    _cache = (time.monotonic() + ttl, status)


def prime_cache(status: DeployModeStatus, *, seconds: float = math.inf) -> None:
    """Make this process believe `status` without reading it (nor DEPLOYMENT_MODE). For test
    suites that start every test from a known state; production code never needs it."""
    _remember(status, seconds)


def force_for_process(reason: str) -> None:
    """Deploy mode on for this process until it exits, whatever the shared state says.

    deploy_safe runs its own start-up (every app's ready()) and its work this way, so no
    code it loads can write a protected row; its bookkeeping goes to deployguard's tables.
    """
    global _forced_for_process
    _forced_for_process = DeployModeStatus(enabled=True, source="process", reason=reason)
    # Debug, not info: it happens on every deploy_safe start, --help included; a refusal it
    # causes names it in full.
    logger.debug("Deploy mode forced on for this process: %s", reason)


def cached() -> DeployModeStatus | None:
    """The state this process may still trust without a query, or None once the cache has
    expired. Never touches the database: for callers that must not (SQLite's authorizer)."""
    if _forced_for_process is not None:
        return _forced_for_process
    entry = _cache
    if entry is not None and time.monotonic() < entry[0]:
        return entry[1]
    if _forced_by_environment():
        return FORCED_BY_ENVIRONMENT
    return None


def clear_cache() -> None:
    """Forget the cached state: the next check reads the database."""
    global _cache
    _cache = None


def _read() -> DeployModeStatus:
    from deployguard.models import STATE_ROW_ID, DeployModeState

    alias = conf.get("DEPLOYGUARD_DATABASE")
    try:
        connection = connections[alias]
        key = (alias, str(connection.settings_dict["NAME"]))
        if key not in _table_seen:
            # Until deployguard is migrated (a fresh database), there is no switch to read;
            # asking first keeps a failing SELECT from aborting the caller's transaction.
            with connection.cursor() as cursor:
                names = connection.introspection.table_names(cursor)
            if DeployModeState._meta.db_table not in names:
                return NOT_INSTALLED
            if DeployModeState.history.model._meta.db_table not in names:  # half migrated
                rows = list(DeployModeState.objects.using(alias).filter(pk=STATE_ROW_ID)[:1])
                return status_from_row(rows[0]) if rows else NEVER_SWITCHED
            _table_seen.add(key)
        row = _read_row(alias, STATE_ROW_ID)
    except DatabaseError as error:
        logger.error("Deploy mode state unreadable, refusing writes: %s", error)
        return DeployModeStatus(enabled=True, source="unreadable", error=str(error).strip() or repr(error))
    if row.id is None:
        # No row: off on a database where deploy mode was never switched; "on, state lost"
        # where it was (its history has rows), never "off".
        return STATE_LOST if row.switched else NEVER_SWITCHED
    return status_from_row(row)


def _read_row(alias: str, row_id: int) -> Any:
    """The state row (id None when there is none) and whether the switch has any history
    (`switched`), in one query: the state's cost per cache lifetime stays one query."""
    from deployguard.models import DeployModeState

    quote = connections[alias].ops.quote_name
    state_table = quote(DeployModeState._meta.db_table)
    history_table = quote(DeployModeState.history.model._meta.db_table)
    columns = ", ".join(f"s.{quote(field.column)}" for field in DeployModeState._meta.concrete_fields)
    sql = (
        f"SELECT {columns}, EXISTS (SELECT 1 FROM {history_table}) AS switched "  # noqa: S608
        f"FROM (SELECT 1 AS probe) probe LEFT JOIN {state_table} s ON s.{quote('id')} = %s"
    )
    return next(iter(DeployModeState.objects.using(alias).raw(sql, [row_id])))


def status_from_row(row: Any) -> DeployModeStatus:
    """The status a DeployModeState row describes."""
    return DeployModeStatus(
        enabled=row.enabled,
        source="database",
        reason=row.reason,
        changed_by=row.changed_by,
        since=row.since,
        deploy_id=row.deploy_id,
        expected_end=row.expected_end,
    )


def os_actor() -> str:
    """The OS user and host of this process, for commands run from a shell."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


MAX_EXPECTED_MINUTES = 7 * 24 * 60
EXPECTED_MINUTES_INVALID = "expected minutes must be a number more than 0 and at most {limit} (a week)."


def valid_expected_minutes(value: Any) -> float | None:
    """The expected duration in minutes, or None; ValueError for anything else (bools included)."""
    if value is None or value == "":
        return None
    try:
        minutes = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        minutes = math.nan
    if not 0 < minutes <= MAX_EXPECTED_MINUTES:  # also false for NaN
        raise ValueError(EXPECTED_MINUTES_INVALID.format(limit=MAX_EXPECTED_MINUTES))
    return minutes


def enable(
    *,
    reason: str,
    changed_by: str,
    deploy_id: str = "",
    expected_minutes: float | None = None,
    user: Any = None,
) -> DeployModeStatus:
    """Turn deploy mode on in the shared state. Raises DeployModeAlreadyOn if it is on.

    Returns at once: other processes see it within the cache lifetime. Use `switch_on()`
    to wait for them.
    """
    from deployguard.models import STATE_ROW_ID, DeployModeState

    reason = reason.strip()
    if not reason:
        raise ValueError(REASON_REQUIRED)
    expected_minutes = valid_expected_minutes(expected_minutes)
    alias = conf.get("DEPLOYGUARD_DATABASE")
    now = timezone.now()
    with _writing_the_switch(), transaction.atomic(using=alias):
        lock_switch(alias)
        row, _ = DeployModeState.objects.using(alias).select_for_update().get_or_create(pk=STATE_ROW_ID)
        if row.enabled:
            raise DeployModeAlreadyOn(status_from_row(row))
        row.enabled = True
        row.reason = reason
        row.changed_by = changed_by[:255]
        row.since = now
        row.deploy_id = deploy_id[:64]
        row.expected_end = now + timedelta(minutes=expected_minutes) if expected_minutes else None
        row._change_reason = f"Deploy mode on: {reason}"  # type: ignore[attr-defined]
        row._history_user = user  # type: ignore[attr-defined]
        row.save()
    status = status_from_row(row)
    clear_cache()
    logger.warning("Deploy mode turned ON by %s: %s", changed_by, reason)
    return status


def disable(
    *, changed_by: str, reason: str = "Deploy finished", user: Any = None, force: bool = False
) -> tuple[DeployModeStatus, bool]:
    """Turn deploy mode off in the shared state; returns (status, whether it was on). Raises
    ownership.DeployModeHeld while another process's deploy holds it, unless `force`."""
    from deployguard.models import STATE_ROW_ID, DeployModeState

    alias = conf.get("DEPLOYGUARD_DATABASE")
    reason = ownership.refuse_switch_off(using=alias, force=force, changed_by=changed_by, reason=reason)
    with _writing_the_switch(), transaction.atomic(using=alias):
        lock_switch(alias)
        row = DeployModeState.objects.using(alias).select_for_update().filter(pk=STATE_ROW_ID).first()
        lost = row is None and _state_was_lost(alias)
        was_on = lost or (row is not None and row.enabled)
        # First, so the row's history insert leaves no pending trigger event on a table the
        # thaw alters; even when it was off already: triggers a restored backup brought back go off too.
        if freeze.supported(connections[alias]):
            freeze.thaw(connections[alias])
        if was_on:
            row = row or DeployModeState(pk=STATE_ROW_ID)  # a lost row comes back, off
            row.enabled = False
            row.changed_by = changed_by[:255]
            row.reason = ""
            row.since = None
            row.deploy_id = ""
            row.expected_end = None
            row._change_reason = f"Deploy mode off: {reason}"  # type: ignore[attr-defined]
            row._history_user = user  # type: ignore[attr-defined]
            row.save()
    status = status_from_row(row) if row is not None else DeployModeStatus(enabled=False, source="database")
    clear_cache()
    if was_on:
        logger.warning("Deploy mode turned OFF by %s: %s", changed_by, reason)
    return status, was_on


def wait_for_propagation() -> float:
    """Sleep until every process's cached state has expired; returns the seconds waited."""
    delay = conf.propagation_delay()
    if delay:
        time.sleep(delay)
    return delay


def drain_in_flight_writes(timeout: float | None = None) -> str:
    """Wait for transactions that wrote to protected tables before the switch to end.

    It turns on the database's own freeze (deployguard.freeze): on PostgreSQL its locks wait
    for every transaction that wrote to a protected table, on SQLite its BEGIN IMMEDIATE waits
    for the one current writer (the timeout bounds either); its triggers then refuse every
    write, from any client. Returns what it did; raises DrainTimeout when a writer outlasts
    `timeout`.
    """
    timeout = float(conf.get("DEPLOYGUARD_DRAIN_TIMEOUT") if timeout is None else timeout)
    alias = conf.get("DEPLOYGUARD_DATABASE")
    connection = connections[alias]
    if connection.in_atomic_block:
        return "skipped: called inside a transaction, which would hold the locks until it ends"
    if freeze.supported(connection):
        tables = freeze.freezable_tables(connection)
        if not tables:
            return "no protected tables"
        try:
            frozen = freeze.freeze(
                connection, tables, lock_timeout=timeout, still_wanted=lambda: _row_says_on(alias)
            )
        except DatabaseError as error:
            if getattr(error.__cause__, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
                raise DrainTimeout(
                    f"The database freeze needs the tables' owner, and this process connects as a role that "
                    f"may not install it ({str(error).strip()}): the database does not refuse writes yet. "
                    "Switch deploy mode with `manage.py deploy_mode` where DEPLOYGUARD_OWNER_DATABASE_URL is "
                    "set: `manage.py deploy_mode off`, then `manage.py deploy_mode on`."
                ) from error
            raise DrainTimeout(
                f"A transaction that wrote before deploy mode went on was still open after {timeout:g}s "
                f"({str(error).strip()}); its writes may still commit, and the database does not refuse "
                "writes yet. Find it (pg_stat_activity on PostgreSQL) and let it end (or end it), then run "
                "`manage.py deploy_mode off` and `manage.py deploy_mode on` again."
            ) from error
        if frozen < 0:
            return "skipped: deploy mode was turned off meanwhile, so the database was not frozen"
        return (
            f"waited for writers on {frozen} protected tables; the database now refuses their writes "
            f"({'PostgreSQL' if connection.vendor == 'postgresql' else 'SQLite'} triggers)"
        )
    return f"skipped: no drain for {connection.vendor}"


def switch_on(**kwargs: Any) -> tuple[DeployModeStatus, str]:
    """Turn deploy mode on and return once no process can still write: (status, drain report)."""
    status = enable(**kwargs)
    wait_for_propagation()
    return status, drain_in_flight_writes()


def switch_off(**kwargs: Any) -> tuple[DeployModeStatus, bool]:
    """Turn deploy mode off and return once every process may write again."""
    status, was_on = disable(**kwargs)
    if was_on:
        wait_for_propagation()
    return status, was_on


def match_freeze(using: str = "default") -> str:
    """After a restore: the database's freeze follows the state row (a backup taken during a
    deploy brings its enabled triggers back with it; one taken while off brings none)."""
    connection = connections[using]
    if not freeze.supported(connection):
        return ""
    if current().enabled:
        if not freeze.verify(connection):
            return "deploy mode is on: the restored freeze verifies and stays"
        # A backup taken while deploy mode was off brings no freeze back (restore_db keeps the
        # state, on): freeze the restored tables as the state says.
        return f"deploy mode is on and the restored database was not frozen: {drain_in_flight_writes()}"
    return f"deploy mode is off: {freeze.thaw(connection)} trigger(s) disabled"


# --- switching serialized: the state row and the database's freeze change together ---------

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL: not the owner, or no privilege

STATE_LOST = DeployModeStatus(
    enabled=True,
    source="lost",
    error="the deploy mode state row is missing although deploy mode has been switched on this database",
)


def lock_switch(alias: str) -> None:
    """Inside the caller's transaction: wait for any other switch of deploy mode to end (a
    PostgreSQL advisory lock; on SQLite the transaction's BEGIN IMMEDIATE is that lock), so a
    switch on and a switch off never interleave and the row and the freeze always agree."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            freeze.lock_switch(cursor)


def _row_says_on(alias: str) -> bool:
    """Inside the freeze's transaction, under the switch's lock: whether the state row is still on."""
    from deployguard.models import STATE_ROW_ID, DeployModeState

    enabled = DeployModeState.objects.using(alias).filter(pk=STATE_ROW_ID).values_list("enabled", flat=True)
    found = enabled.first()
    return _state_was_lost(alias) if found is None else found


def _state_was_lost(alias: str) -> bool:
    """No state row, yet deploy mode has been switched here (its history has rows) or the
    database's freeze is on: the row was deleted. Read as "on, state lost", never "off"."""
    from deployguard.models import DeployModeState

    connection = connections[alias]
    with connection.cursor() as cursor:  # its history's table may not be migrated yet
        history_table = DeployModeState.history.model._meta.db_table
        migrated = history_table in connection.introspection.table_names(cursor)
    if migrated and DeployModeState.history.using(alias).exists():
        return True
    return freeze.supported(connection) and any(freeze.frozen_tables(connection).values())


def agrees(status: DeployModeStatus, freeze_state: str) -> bool:
    """Whether the database's freeze (agreement()'s first answer) is what `status` says."""
    if freeze_state in ("unsupported", "unknown") or status.source in ("environment", "process"):
        return True
    return freeze_state == ("on" if status.enabled else "off")


def agreement(status: DeployModeStatus, alias: str | None = None) -> tuple[str, str]:
    """(what the database's freeze is: "on", "off", "broken" or "unsupported"; a sentence
    saying so, and whether it disagrees with `status`, the state)."""
    connection = connections[alias or conf.get("DEPLOYGUARD_DATABASE")]
    if not freeze.supported(connection):
        return "unsupported", f"The database freeze is not available on {connection.vendor}."
    try:
        frozen = freeze.frozen_tables(connection)
        problems = freeze.verify(connection) if any(frozen.values()) else []
    except DatabaseError as error:
        return "unknown", f"The database freeze could not be read ({str(error).strip()})."
    if any(frozen.values()):
        freeze_state = "broken" if problems else "on"
    else:
        freeze_state = "off"
    if freeze_state == "broken":
        return freeze_state, (
            "The database freeze is broken: "
            + "; ".join(problems[:5])
            + (" …" if len(problems) > 5 else "")
            + ". Run `manage.py deploy_mode off` then `manage.py deploy_mode on` to install it again."
        )
    if status.source in ("environment", "process"):
        return freeze_state, f"The database freeze is {freeze_state}."
    if status.enabled and freeze_state == "off":
        return freeze_state, (
            "The state says deploy mode is on but the database is not frozen (a switch in progress, or a "
            "drain that timed out): run `manage.py deploy_mode off` then `manage.py deploy_mode on`."
        )
    if not status.enabled and freeze_state == "on":
        return freeze_state, (
            "The state says deploy mode is off but the database is frozen: run `manage.py deploy_mode off` "
            "to thaw it."
        )
    return freeze_state, f"The database freeze is {freeze_state}, as the state says."
