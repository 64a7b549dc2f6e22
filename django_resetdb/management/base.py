"""What the destructive commands share: their options, the prompt, errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from argparse import ArgumentParser
from typing import TYPE_CHECKING, Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from django_resetdb import clock, driver
from django_resetdb.conf import REGENERATE_MODES, SETTING_NAME, overridden
from django_resetdb.exceptions import Refused, ResetError
from django_resetdb.output import INTERRUPTED_EXIT_STATUS, one_line
from django_resetdb.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from django_resetdb import guard


# The in-place line while a command plans (on a terminal, once it takes over a second).
PLANNING = "planning: reading the models, the migration files and the database..."
PLANNING_FILES = "planning: reading the models and the migration files..."


# What --help says after the options: the verbosity levels and the exit statuses, each
# command's own lines first (``help_epilog``).
EXIT_STATUSES = """\
exit status:
  0    done (also when there was nothing to do)
  1    an error, in one CommandError line; nothing was changed, or the line says what
       state things are in and the one command that puts them back
  2    wrong command-line usage
  3    refused by a guard (ENABLED, HOSTS, the protected marker, the prompt, ...); the
       line names the setting or flag that would allow it
  130  interrupted (Ctrl-C); the line says what state things are in"""


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's order of options, with the epilog's lines kept as written."""


class ResetCommand(BaseCommand):
    """Shared options and error handling of the destructive commands."""

    # The lines --help shows after the options, before the exit statuses.
    help_epilog = ""

    # atomic() has rolled the transaction back by the time Ctrl-C reaches execute().
    interrupted_message = "Interrupted; the transaction was rolled back, nothing was changed."
    # When the command began, on the monotonic clock: from the process's start when run
    # from the command line (what the user waited for), else from execute()
    # (call_command in a longer-lived process).
    started: float | None = None
    # The in-place line of the long steps; see show_progress().
    progress: Progress = NO_PROGRESS

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = _HelpFormatter
        # Kept as written now, like the epilog: wrapped here.
        parser.description = textwrap.fill(self.help, 88) if self.help else None
        parser.epilog = f"{self.help_epilog}\n\n{EXIT_STATUSES}".lstrip()
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        self.started = clock.PROCESS_STARTED
        super().run_from_argv(argv)

    def add_database_argument(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help="Database alias to act on. Default: 'default'.",
        )

    def add_database_arguments(self, parser: ArgumentParser) -> None:
        self.add_database_argument(parser)
        self.add_input_arguments(parser)

    def add_history_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--regenerate",
            choices=REGENERATE_MODES,
            default=None,
            help=(
                "'own': regenerate only the migrations after the shared point in git, "
                "keeping those the team shares; 'all': the whole history, shared "
                f"migrations included. Default: {SETTING_NAME}['REGENERATE'] ('own')."
            ),
        )
        parser.add_argument(
            "--shared-ref",
            metavar="REF",
            default=None,
            help=(
                "The git branch, tag or commit whose migration files count as shared. "
                f"Default: {SETTING_NAME}['SHARED_REF'], else where HEAD meets its "
                "upstream, else the default branch."
            ),
        )

    def add_input_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not prompt for the database name. Never skips the other guards.",
        )
        parser.add_argument(
            "--terminate-blockers",
            action="store_true",
            help="Terminate sessions holding locks in the schemas instead of failing.",
        )

    def execute(self, *args: Any, **options: Any) -> str | None:
        # Our errors print as one CommandError line, with the exit status they carry
        # (3 for a refusal by a guard).
        if self.started is None:
            self.started = time.monotonic()
        # Before the system checks and before any module that needs psycopg 3 is
        # imported: the commands import those inside their methods, so that Django can
        # load them and this one line is what the user sees, not an import traceback.
        missing = driver.missing_psycopg_message()
        if missing:
            raise CommandError(missing)
        overrides = {
            "REGENERATE": options.pop("regenerate", None),
            "SHARED_REF": options.pop("shared_ref", None),
        }
        try:
            with overridden(**overrides):
                return super().execute(*args, **options)
        except ResetError as exc:
            raise CommandError(str(exc), returncode=exc.returncode) from exc
        except KeyboardInterrupt as exc:
            raise CommandError(
                self.interrupted_message, returncode=INTERRUPTED_EXIT_STATUS
            ) from exc
        except BrokenPipeError as exc:
            # The reader went away (`resetdb --dry-run | head`): later writes, Python's
            # own flush at exit included, go nowhere rather than into a traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise CommandError(
                "The output was closed before the command had written it all (broken pipe)."
            ) from exc
        except DatabaseError as exc:
            # Whatever PostgreSQL refused, the transaction was rolled back.
            message = one_line(exc)
            raise CommandError(
                f"{type(exc).__name__}: {message}; the transaction was rolled back, nothing "
                "was changed."
            ) from exc
        finally:
            # Before the error is printed, or the shell's prompt comes back.
            self.progress.clear()

    def confirm(
        self, target: guard.Target, command: str, *, interactive: bool, verbosity: int
    ) -> None:
        """Ask for the database name, or with --no-input just show the target."""
        from django_resetdb import guard

        if interactive:
            guard.confirm(target, command, write=self.stdout.write)
        elif verbosity >= 1:
            self.stdout.write(target.one_line())

    def ask_yes(self, question: str, *, refusal: str) -> None:
        """Ask ``question``; raise :class:`Refused` with ``refusal`` unless the answer is
        'yes'. No answer (end of input, Ctrl-C) is not 'yes'."""
        try:
            answer = input(question)
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() != "yes":
            raise Refused(refusal)

    def show_progress(self, verbosity: int) -> Progress:
        """The in-place line of the long steps: on a terminal at verbosity 1 or more,
        else one that does nothing."""
        self.progress = Progress.for_output(self.stdout, verbosity)
        return self.progress

    def log(self, verbosity: int) -> Any:
        def write(message: str, level: int) -> None:
            if verbosity >= level:
                with self.progress.cleared():
                    self.stdout.write(message)

        return write
