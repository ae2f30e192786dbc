"""Shared by the operator commands: misuse exits 2, from a shell and from call_command alike."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployguard.terminal import printable

EXIT_CLEAN = 0
EXIT_VIOLATIONS = 1
EXIT_MISUSE = 2


def misuse(message: str) -> CommandError:
    return CommandError(printable(message), returncode=EXIT_MISUSE)


class MisuseParser(CommandParser):
    """Argument errors are misuse, exit status 2, in subcommands too: Django's own CommandParser
    makes them exit 1 under call_command (and 2 from a shell)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.called_from_command_line:
            super().error(message)  # argparse prints the usage and exits with status 2
        raise misuse(f"Error: {message}")


class IntegrityCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parsers = [parser]
        while parsers:  # the parser, and its subcommands' (deploy_mode on|off|status)
            current = parsers.pop()
            current.__class__ = MisuseParser
            for action in current._actions:
                if isinstance(action, argparse._SubParsersAction):
                    parsers.extend(action.choices.values())
        return parser


# The base of every operator command (the name is older than the commands it serves).
OperatorCommand = IntegrityCommand
