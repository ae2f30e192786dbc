"""Migrate's bookkeeping tables after a deploy: every row that was there is unchanged, and the rows
added are only those migrate adds.

`migrate` may write rows into django_migrations, django_content_type and auth_permission
(tables.migrate_writable_tables), so a data migration could write there too: swap two
permissions' codenames, say, and a user who could only view may then publish. The post-check
proves, for each of those tables, that the rows up to its largest primary key at the freeze
hash exactly as they did, and that each row above it is one migrate would add: a django_migrations
row for a migration this deploy applied, a content type for an installed model, a permission
that model declares. The tables that give permissions to people (auth_group_permissions,
auth_user_user_permissions) are ordinary protected tables, compared whole: no row may change,
appear or go.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from django.apps import apps
from django.db import connections

from deployguard.fingerprint import fingerprint_table, primary_key_column
from deployguard.fingerprints import TableFingerprint, difference

EXISTING_CHANGED = "{table}: rows that existed before the deploy changed ({how})"
NOT_APPLIED = "django_migrations: gained {names}, which this deploy did not apply"
NOT_A_MODEL = "django_content_type: gained {names}, which no installed model is"
NOT_DECLARED = "auth_permission: gained {names}, which no installed model declares"
NAMED = 5  # rows named in one line


def differences(
    frozen: Mapping[str, TableFingerprint], *, applied: Collection[str], using: str = "default"
) -> list[str]:
    """One line per way the bookkeeping tables in `frozen` differ from what migrate may do:
    rows that existed changed or went, or rows added that migrate would not add. `applied`: the
    migrations (APP.NAME) this deploy applied, with those their squashes replace."""
    found = []
    for table, before in sorted(frozen.items()):
        if before.max_pk is None and before.count:
            found.append(
                f"{table}: has no single integer primary key, so its existing rows cannot be told apart"
            )
            continue
        pk = primary_key_column(table, using=using)
        if pk is None:
            found.append(f"{table}: its primary key is gone")
            continue
        existing = fingerprint_table(
            table, using=using, columns=before.columns, pk_at_most=(pk, before.max_pk)
        )
        how = difference(table, before.as_digest(), {"count": existing.count, "digest": existing.digest})
        if how:
            found.append(EXISTING_CHANGED.format(table=table, how=how.removeprefix(f"{table}: ")))
        check = _ADDED_CHECKS.get(table)
        if check is not None:
            found.extend(check(_added(table, pk, before.max_pk, using=using), applied, using))
    return found


def _added(table: str, pk: str, above: int | None, *, using: str) -> list[dict[str, Any]]:
    connection = connections[using]
    quote = connection.ops.quote_name
    sql = f"SELECT * FROM {quote(table)} WHERE {quote(pk)} > %s ORDER BY {quote(pk)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [above if above is not None else -(2**63)])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _named(names: list[str]) -> str:
    more = f" (and {len(names) - NAMED} more)" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def _migrations(added: list[dict[str, Any]], applied: Collection[str], using: str) -> list[str]:
    strangers = [
        f"{row['app']}.{row['name']}" for row in added if f"{row['app']}.{row['name']}" not in applied
    ]
    return [NOT_APPLIED.format(names=_named(strangers))] if strangers else []


def _installed() -> set[tuple[str, str]]:
    return {
        (model._meta.app_label, model._meta.model_name)
        for model in apps.get_models(include_auto_created=True)
    }


def _content_types(added: list[dict[str, Any]], applied: Collection[str], using: str) -> list[str]:
    installed = _installed()
    strangers = [
        f"{row['app_label']}.{row['model']}"
        for row in added
        if (row["app_label"], row["model"]) not in installed
    ]
    return [NOT_A_MODEL.format(names=_named(strangers))] if strangers else []


def _declared() -> dict[tuple[str, str], set[str]]:
    """Each installed model's permission codenames: its default ones and Meta.permissions."""
    declared = {}
    for model in apps.get_models(include_auto_created=True):
        opts = model._meta
        codenames = {f"{action}_{opts.model_name}" for action in opts.default_permissions}
        codenames |= {codename for codename, _ in opts.permissions}
        declared[(opts.app_label, opts.model_name)] = codenames
    return declared


def _permissions(added: list[dict[str, Any]], applied: Collection[str], using: str) -> list[str]:
    if not added:
        return []
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, app_label, model FROM django_content_type")
        content_types = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
    declared = _declared()
    strangers = []
    for row in added:
        model = content_types.get(row["content_type_id"])
        if model is None or row["codename"] not in declared.get(model, set()):
            strangers.append(f"{row['codename']} ({'.'.join(model) if model else 'no content type'})")
    return [NOT_DECLARED.format(names=_named(strangers))] if strangers else []


_ADDED_CHECKS: dict[str, Callable[[list[dict[str, Any]], Collection[str], str], list[str]]] = {
    "django_migrations": _migrations,
    "django_content_type": _content_types,
    "auth_permission": _permissions,
}
