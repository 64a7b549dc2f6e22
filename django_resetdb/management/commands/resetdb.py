from __future__ import annotations

import io
from argparse import ArgumentParser
from typing import Any

from django_resetdb import guard
from django_resetdb.conf import get_settings
from django_resetdb.management.base import ResetCommand
from django_resetdb.pipeline import rebuild


class Command(ResetCommand):
    help = (
        "Rebuild the database: guard, confirm, reset the schemas and migrate, all in one "
        "transaction."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        self.add_database_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show the target and the plan, change nothing.",
        )

    def handle(
        self,
        *,
        database: str,
        interactive: bool,
        dry_run: bool,
        terminate_blockers: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        schemas = get_settings().schemas
        target = guard.check(database, "resetdb", schemas)
        if dry_run:
            self.stdout.write("resetdb would reset this database (dry run, nothing changed):")
            for line in target.lines():
                self.stdout.write(line)
            self.stdout.write(f"  steps     reset schema(s) {', '.join(schemas)}, migrate")
            return
        self.confirm(target, "resetdb", interactive=interactive, verbosity=verbosity)

        def migrate_output() -> io.TextIOBase:
            return self.stdout if verbosity >= 2 else io.StringIO()

        result = rebuild(
            database,
            terminate_blockers=terminate_blockers,
            log=self.log(verbosity),
            migrate_output=migrate_output,
        )
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(result.summary()))
