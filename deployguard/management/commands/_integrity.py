"""Shared by the operator commands: misuse exits 2, from a shell and from call_command alike."""

from __future__ import annotations

from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployguard.terminal import printable

EXIT_CLEAN = 0
EXIT_VIOLATIONS = 1
EXIT_MISUSE = 2


def misuse(message: str) -> CommandError:
    return CommandError(printable(message), returncode=EXIT_MISUSE)


class IntegrityCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        shell_error = parser.error

        def error(message: str) -> NoReturn:
            if parser.called_from_command_line:
                shell_error(message)  # argparse prints the usage and exits 2
            raise misuse(f"Error: {message}")

        parser.error = error  # type: ignore[method-assign]
        return parser
