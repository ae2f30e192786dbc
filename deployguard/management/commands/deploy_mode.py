"""Turn deploy mode on or off, or show who turned it on, why and when."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from deployguard import state, switch_request
from deployguard.exceptions import DeployModeAlreadyOn, DrainTimeout
from deployguard.management.commands._integrity import OperatorCommand
from deployguard.origin import current_deploy_id
from deployguard.ownership import DeployModeHeld
from deployguard.terminal import printable

EXIT_UNREADABLE = 1
EXIT_ALREADY_ON = 3
EXIT_DRAIN_TIMEOUT = 4
EXIT_FREEZE_DISAGREES = 5
EXIT_HELD_BY_DEPLOY = 6

STATE_UNAVAILABLE = (
    "The deploy mode state could not be {verb} ({error}): check DATABASE_URL and run `manage.py migrate`."
)
FORCED_STILL = (
    "Note: this process has DEPLOYMENT_MODE set, which forces deploy mode on for it whatever the "
    "shared state says."
)


def _check_text(option: str, field: str, value: str) -> None:
    """The same rules as POST /_deploy/mode's (one line of printable text the state can hold)."""
    try:
        switch_request.text(field, value)
    except ValueError as error:
        raise CommandError(f"{option}: {error}", returncode=2) from None


class Command(OperatorCommand):
    help = (
        "Deploy mode freezes every write to protected tables, in every process and host that shares "
        "the database, while reads keep working. "
        "`on --reason TEXT [--expected-minutes N] [--deploy-id ID]` turns it on and returns once no "
        "process can still write (it waits out every process's state cache, then for transactions "
        "that wrote before the switch); `off` turns it off and returns once every process may write "
        "again; `status [--format json]` shows who turned it on, why and when, and whether the "
        "database's own freeze (its triggers) agrees. On PostgreSQL it connects as the tables' owner "
        "(DEPLOYGUARD_OWNER_DATABASE_URL). "
        "Exit status: 0 done; 1 the state could not be read or written; 2 usage error; "
        "3 `on` found deploy mode already on (nothing changed); 4 `on` succeeded but a transaction "
        "that wrote before it was still open after DEPLOYGUARD_DRAIN_TIMEOUT (deploy mode is on, "
        "that transaction's writes may still commit); 5 `status` found the database's freeze "
        "disagreeing with the state (on while the state says off, off while it says on, or broken: "
        "a trigger disabled, dropped or replaced), which it names; 6 `off` refused: a running "
        "deploy_safe holds deploy mode (nothing changed; `off --force` overrides, logged)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{on,off,status}")
        on = actions.add_parser("on", help="Turn deploy mode on.")
        on.add_argument("--reason", required=True, help="Why: shown to everyone whose write is refused.")
        on.add_argument(
            "--expected-minutes",
            type=float,
            default=None,
            help="How long the deploy should take; sets Retry-After on refused requests.",
        )
        on.add_argument(
            "--deploy-id",
            default=None,
            help="The deploy this belongs to (default: DEPLOYGUARD_DEPLOY_ID from the environment).",
        )
        off = actions.add_parser("off", help="Turn deploy mode off.")
        off.add_argument("--reason", default="Deploy finished", help="Recorded in the state's history.")
        off.add_argument(
            "--force",
            action="store_true",
            help=(
                "Switch it off even while a running deploy_safe holds it: an override, logged and recorded "
                "in the state's history; that deploy then stops (exit 4) without restoring."
            ),
        )
        status = actions.add_parser("status", help="Show the deploy mode state.")
        status.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "on":
                self.turn_on(**options)
            elif action == "off":
                self.turn_off(**options)
            else:
                self.show(**options)
        except DatabaseError as error:
            verb = "read" if action == "status" else "written"
            raise CommandError(
                STATE_UNAVAILABLE.format(verb=verb, error=printable(str(error).strip())),
                returncode=EXIT_UNREADABLE,
            ) from error

    def turn_on(
        self, *, reason: str, expected_minutes: float | None, deploy_id: str | None, **options: Any
    ) -> None:
        if not reason.strip():
            raise CommandError(state.REASON_REQUIRED, returncode=2)
        _check_text("--reason", "reason", reason)
        if deploy_id is not None:
            _check_text("--deploy-id", "deploy_id", deploy_id)
        try:
            state.valid_expected_minutes(expected_minutes)
        except ValueError as error:
            raise CommandError(f"--expected-minutes: {error}", returncode=2) from None
        try:
            status, drained = state.switch_on(
                reason=reason,
                changed_by=state.os_actor(),
                deploy_id=current_deploy_id() if deploy_id is None else deploy_id,
                expected_minutes=expected_minutes,
            )
        except DeployModeAlreadyOn as error:
            raise CommandError(printable(error), returncode=EXIT_ALREADY_ON) from error
        except DrainTimeout as error:
            raise CommandError(
                f"Deploy mode is ON, but: {printable(error)}",
                returncode=EXIT_DRAIN_TIMEOUT,
            ) from error
        self.stdout.write(self.style.SUCCESS(f"Deploy mode is ON. {printable(status.describe())}"))
        if options["verbosity"] > 1:
            self.stdout.write(f"In-flight writes: {drained}.")

    def turn_off(self, *, reason: str, force: bool = False, **options: Any) -> None:
        _check_text("--reason", "reason", reason)
        try:
            _, was_on = state.switch_off(changed_by=state.os_actor(), reason=reason, force=force)
        except DeployModeHeld as error:
            raise CommandError(printable(error), returncode=EXIT_HELD_BY_DEPLOY) from None
        if was_on:
            self.stdout.write(self.style.SUCCESS("Deploy mode is OFF: writes are allowed again."))
        else:
            self.stdout.write("Deploy mode was already off; nothing changed.")
        if state.current().source == "environment":
            self.stderr.write(self.style.WARNING(FORCED_STILL))

    def show(self, *, format: str, **options: Any) -> None:
        status = state.current()
        if status.source == "unreadable":
            raise CommandError(
                STATE_UNAVAILABLE.format(verb="read", error=printable(status.error)),
                returncode=EXIT_UNREADABLE,
            )
        freeze_state, freeze_detail = state.agreement(status)
        agrees = state.agrees(status, freeze_state)
        if format == "json":
            body = {**status.as_dict(), "freeze": freeze_state, "freeze_agrees": agrees}
            self.stdout.write(json.dumps({**body, "freeze_detail": freeze_detail}))
        elif status.enabled:
            self.stdout.write(self.style.WARNING(f"Deploy mode is ON. {printable(status.describe())}"))
        else:
            self.stdout.write(printable(status.describe()))
        if not agrees:
            raise CommandError(printable(freeze_detail), returncode=EXIT_FREEZE_DISAGREES)
        if format == "text":
            self.stdout.write(printable(freeze_detail))
