"""Commands that delete data wholesale refuse to run against production without an explicit override.

Django's `flush`, `sqlflush` (piped into `dbshell`), `loaddata` over protected tables,
`migrate APP zero` and `remove_stale_contenttypes` can each empty or overwrite production in
one line. deployguard overrides them: under DJANGO_ENV=production each refuses with a message
that names the safe alternative, unless given `--override-production-guard "REASON"`, which is
logged (logger `deployguard.wholesale`, WARNING) and written to stderr before anything runs.
"""

from __future__ import annotations

import getpass
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployguard.terminal import printable

logger = logging.getLogger("deployguard.wholesale")

OVERRIDE_FLAG = "--override-production-guard"
EXIT_REFUSED = 1
REFUSED = (
    "Refusing to run `{command}` under DJANGO_ENV=production: {what}. {instead} "
    'If you truly mean it, rerun with {flag} "REASON" (logged, with your name).'
)
OVERRIDDEN = "Production guard overridden for `{command}` by {user}: {reason}"
SAFE_ALTERNATIVES = (
    "To put fake rows aside use `manage.py scrub_fake_data` (reversible); to return to a known "
    "state use `manage.py restore_db` with a verified backup (`manage.py backup_db --list`)."
)


def guards_production() -> bool:
    """Whether this process runs against production (DJANGO_ENV=production), read at call time."""
    return getattr(settings, "DJANGO_ENV", "") == "production"


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_override_argument(parser: CommandParser) -> None:
    parser.add_argument(
        OVERRIDE_FLAG,
        dest="override_production_guard",
        metavar="REASON",
        default=None,
        help="Run even under DJANGO_ENV=production, for this logged reason (it deletes data wholesale).",
    )


def refuse_in_production(command: BaseCommand, name: str, options: dict[str, Any], what: str) -> None:
    """Refuse `name` under production unless overridden with a reason; log the override."""
    if not guards_production():
        return
    reason = (options.get("override_production_guard") or "").strip()
    if not reason:
        raise CommandError(
            REFUSED.format(command=name, what=what, instead=SAFE_ALTERNATIVES, flag=OVERRIDE_FLAG),
            returncode=EXIT_REFUSED,
        )
    message = OVERRIDDEN.format(command=name, user=operator(), reason=reason)
    # An argument, not the format: the logger's filter escapes arguments (a reason is typed text).
    logger.warning("%s", message)
    command.stderr.write(printable(message))
