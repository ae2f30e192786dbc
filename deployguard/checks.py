"""System checks for deploy mode: the middleware, the guard on every database, the settings."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.backends.signals import connection_created

from deployguard import conf, guard, logs, roles
from deployguard.natural_keys import check_natural_keys

MIDDLEWARE_PATH = "deployguard.middleware.DeployModeMiddleware"
MIN_TOKEN_LENGTH = 32


def register() -> None:
    checks.register(check_middleware, "deployguard")
    checks.register(check_guard_installed, "deployguard")
    checks.register(check_settings, "deployguard")
    checks.register(check_natural_keys, "deployguard")
    checks.register(check_refusals_not_mailed, "deployguard")
    checks.register(check_database_role, "deployguard", deploy=True)


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    middleware = list(settings.MIDDLEWARE)
    if MIDDLEWARE_PATH not in middleware:
        return [
            checks.Error(
                "DeployModeMiddleware is not in MIDDLEWARE: unsafe requests are not refused in deploy mode.",
                hint=f"Add {MIDDLEWARE_PATH!r} as the first entry of MIDDLEWARE.",
                id="deployguard.E001",
            )
        ]
    if middleware[0] != MIDDLEWARE_PATH:
        return [
            checks.Error(
                f"DeployModeMiddleware is not first in MIDDLEWARE ({middleware[0]!r} is): the middleware "
                "before it can touch the database before deploy mode is checked.",
                hint=f"Move {MIDDLEWARE_PATH!r} to the top of MIDDLEWARE.",
                id="deployguard.E002",
            )
        ]
    return []


def check_guard_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    receiver_connected = any(
        lookup_key[0] == "deployguard.guard.install" for lookup_key, *_ in connection_created.receivers
    )
    errors = []
    for alias in connections.settings:
        connection = connections[alias]
        open_without_guard = connection.connection is not None and not guard.is_installed(connection)
        if not receiver_connected or open_without_guard:
            errors.append(
                checks.Error(
                    f"The deploy-mode write guard is not installed on the database {alias!r}: writes "
                    "through it are not refused in deploy mode.",
                    hint="Keep 'deployguard' in INSTALLED_APPS and do not disconnect its connection_created "
                    "receiver or remove deployguard.guard.write_guard from connection.execute_wrappers.",
                    id="deployguard.E003",
                )
            )
    return errors


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        conf.validate()
    except ImproperlyConfigured as error:
        return [
            checks.Error(str(error), hint="See the README's deploy mode settings.", id="deployguard.E005")
        ]
    messages: list[checks.CheckMessage] = []
    known = {model._meta.db_table.lower() for model in apps.get_models(include_auto_created=True)}
    unknown = [name for name in conf.get("DEPLOYGUARD_WRITABLE_TABLES") if name.lower() not in known]
    if unknown:
        messages.append(
            checks.Error(
                f"DEPLOYGUARD_WRITABLE_TABLES names tables no installed model uses: {', '.join(unknown)}.",
                hint="Fix the spelling or remove them; list db_table names, such as 'django_session'.",
                id="deployguard.E004",
            )
        )
    token = conf.get("DEPLOYGUARD_TOKEN")
    if token and len(token) < MIN_TOKEN_LENGTH:
        messages.append(
            checks.Warning(
                f"DEPLOYGUARD_TOKEN is {len(token)} characters: short enough to guess.",
                hint=f"Use at least {MIN_TOKEN_LENGTH}, for example `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`.",
                id="deployguard.W001",
            )
        )
    return messages


def check_refusals_not_mailed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every write refused in deploy mode is a 503 that django.request logs as an ERROR: mailed to
    ADMINS by Django's default logging, one mail per refused request unless filtered out."""
    mailing = logs.handlers_mailing_refusals()
    if not mailing:
        return []
    names = ", ".join(sorted({f"{type(handler).__module__}.{type(handler).__name__}" for handler in mailing}))
    return [
        checks.Error(
            f"Requests refused in deploy mode would be mailed as errors ({names} on django.request): a "
            "deploy would flood the admins' inbox with expected refusals.",
            hint="In LOGGING, add the filter {'()': 'deployguard.logs.SkipDeployModeRefusals'} to the "
            "'django.request' logger (or to each mail handler): deployguard.audit logs each refusal once.",
            id="deployguard.E011",
        )
    ]


def check_database_role(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """check --deploy: the site's connection should be a least-privileged application role, not a
    superuser nor the tables' owner, who can disable, drop or bypass the database's freeze."""
    alias = conf.get("DEPLOYGUARD_DATABASE")
    try:
        problems = roles.connections_problems(alias)
    except DatabaseError as error:
        return [
            checks.Warning(
                f"Could not check the database role of {alias!r}: {str(error).strip()}.",
                hint="Run `manage.py check --deploy` where the database is reachable.",
                id="deployguard.W031",
            )
        ]
    return [
        checks.Warning(
            f"The site {problem}: it can lift the database's deploy-mode freeze (disable or drop its "
            "triggers, read its key, skip triggers) and change the schema.",
            hint="Connect the site and workers as a least-privileged role (`manage.py db_roles --app-role "
            "ROLE --apply`, then DATABASE_URL with that role) and set DEPLOYGUARD_OWNER_DATABASE_URL to "
            "the owner for migrate, deploy_safe and deploy_mode. See the README's production setup.",
            id="deployguard.W030",
        )
        for problem in problems
    ]
