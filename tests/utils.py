"""Helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

import deployguard


@contextmanager
def behind_the_services(why: str = "a test damages rows behind the services") -> Iterator[None]:
    """Let the block write sealed tables (documents') as no application code may: for tests that
    plant the damage integrity rules, scrubs and public pages must cope with. Deploy mode too is
    lifted inside it: use it with deploy mode off."""
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
