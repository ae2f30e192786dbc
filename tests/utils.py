"""Helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

# Compiled as if it were documents.services, the one module documents' seal lets open it: what
# in-process code can still do (README, "What in-process code can still do"), done here on purpose.
_IMPERSONATED: dict[str, Any] = {"__name__": "documents.services"}
exec(  # noqa: S102
    compile(
        "def open_every_table(seal, models):\n    with seal.writing(*models):\n        yield\n",
        "<tests.utils: as documents.services>",
        "exec",
    ),
    _IMPERSONATED,
)


@contextmanager
def behind_the_services() -> Iterator[None]:
    """Let the block write documents' sealed tables (rows and history) around the services, as a
    careless script would: for tests that plant the damage integrity rules, scrubs and public pages
    must cope with. Deploy mode still applies inside it: the write guard judges it first."""
    from documents.models import SEAL, SERVICE_ONLY_MODELS

    yield from _IMPERSONATED["open_every_table"](SEAL, SERVICE_ONLY_MODELS)


@contextmanager
def rewriting_history(why: str = "a test rewrites history records") -> Iterator[None]:
    """Let the block change or delete history records, which nothing may (not even the services):
    `deployguard.allow_writes()`, which lifts every guard, deploy mode's too. For tests that date
    or damage history; use it with deploy mode off."""
    import deployguard

    with deployguard.allow_writes(why):
        yield


def run_command(name: str, *args: str, **options: Any) -> tuple[str, str, int]:
    """Run a management command as a shell would: (stdout, stderr, exit status)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command(name, *args, stdout=stdout, stderr=stderr, **options)
    except CommandError as error:
        stderr.write(f"CommandError: {error}\n")
        return stdout.getvalue(), stderr.getvalue(), error.returncode
    except SystemExit as exit_:
        return stdout.getvalue(), stderr.getvalue(), int(exit_.code or 0)
    return stdout.getvalue(), stderr.getvalue(), 0
