"""System checks: middleware missing or not first, guard missing, unknown allowlist names."""

from __future__ import annotations

from django.db import connection

from deployguard import checks, guard


def ids(messages):
    return [message.id for message in messages]


def test_the_project_passes_every_deployguard_check(db):
    connection.ensure_connection()
    assert checks.check_middleware() + checks.check_guard_installed() + checks.check_settings() == []


def test_missing_middleware_is_e001(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != checks.MIDDLEWARE_PATH]
    messages = checks.check_middleware()
    assert ids(messages) == ["deployguard.E001"]
    assert checks.MIDDLEWARE_PATH in messages[0].hint


def test_middleware_not_first_is_e002(settings):
    others = [m for m in settings.MIDDLEWARE if m != checks.MIDDLEWARE_PATH]
    settings.MIDDLEWARE = [others[0], checks.MIDDLEWARE_PATH, *others[1:]]
    assert ids(checks.check_middleware()) == ["deployguard.E002"]


def test_a_connection_without_the_guard_is_e003(db):
    connection.ensure_connection()
    connection.execute_wrappers.remove(guard.write_guard)
    try:
        assert ids(checks.check_guard_installed()) == ["deployguard.E003"]
    finally:
        guard.install(connection)


def test_unknown_allowlist_names_are_e004(settings):
    settings.DEPLOYGUARD_WRITABLE_TABLES = ["django_session", "django_sesion"]
    messages = checks.check_settings()
    assert ids(messages) == ["deployguard.E004"]
    assert "django_sesion" in messages[0].msg


def test_unusable_settings_are_e005(settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = -1
    assert ids(checks.check_settings()) == ["deployguard.E005"]


def test_a_short_token_is_w001(settings):
    settings.DEPLOYGUARD_TOKEN = "short"
    assert ids(checks.check_settings()) == ["deployguard.W001"]
