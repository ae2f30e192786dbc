"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import EditorFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
SCREENSHOT_DIR = os.environ.get("E2E_SCREENSHOT_DIR", "")


def pytest_collection_modifyitems(config, items):
    # Last, on every worker: Playwright's session-wide event loop keeps running after a browser
    # test, and Django then refuses the ORM in every later test of that process.
    browser_tests = [item for item in items if item.path.is_relative_to(Path(__file__).parent)]
    items[:] = [item for item in items if item not in browser_tests] + browser_tests
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(
            f"CI=true but Chromium is missing at {CHROMIUM}: `apt-get install -y chromium`."
        )
    skip = pytest.mark.skip(reason=f"Chromium missing at {CHROMIUM}: `apt-get install -y chromium`")
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Allow blocking ORM calls while a browser test runs, from its setup to its teardown.

    Playwright's sync API keeps an event loop running in the test's thread, and Django
    refuses ORM calls made beside a running loop. The variable is set for these tests
    only, so subprocesses started by other tests never inherit it.
    """
    if not item.path.is_relative_to(Path(__file__).parent):
        return (yield)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        return (yield)
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS, "headless": True}


@pytest.fixture
def admin_url(live_server):
    return f"{live_server.url}/admin/"


def log_in(page, admin_url: str, username: str) -> None:
    page.goto(admin_url)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


@pytest.fixture
def editor_page(page, admin_url, transactional_db):
    editor = EditorFactory(username="editor")
    log_in(page, admin_url, "editor")
    page.editor = editor
    return page


@pytest.fixture
def snapshot():
    """Save a named screenshot into E2E_SCREENSHOT_DIR (docs/screenshots for `make screenshots`)."""

    def take(page, name: str) -> None:
        if SCREENSHOT_DIR:
            target = Path(settings.BASE_DIR, SCREENSHOT_DIR)
            target.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target / f"{name}.png"))

    return take
