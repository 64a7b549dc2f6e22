from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections

from django_resetdb import guard
from django_resetdb.conf import get_settings
from django_resetdb.schemas import reset_schemas, validate_schema_names


class Command(BaseCommand):
    help = (
        "Drop and recreate PostgreSQL schemas (default: DJANGO_RESETDB['SCHEMAS']), keeping "
        "their owner, privileges, default privileges, comment and extensions."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--schema",
            action="append",
            dest="schemas",
            metavar="NAME",
            help="Schema to reset; repeat for several. Default: DJANGO_RESETDB['SCHEMAS'].",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help="Database alias to reset. Default: 'default'.",
        )
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

    def handle(
        self,
        *,
        schemas: list[str] | None,
        database: str,
        interactive: bool,
        terminate_blockers: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        names = validate_schema_names(schemas or get_settings().schemas)
        target = guard.check(database, "resetschema", names)
        if interactive:
            guard.confirm(target, "resetschema", write=self.stdout.write)

        def log(message: str, level: int) -> None:
            if verbosity >= level:
                self.stdout.write(message)

        result = reset_schemas(database, names, terminate_blockers=terminate_blockers, log=log)
        if verbosity >= 1:
            extensions = (
                f", restored extension(s) {', '.join(result.extensions_restored)}"
                if result.extensions_restored
                else ""
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Reset schema(s) {', '.join(result.schemas)} of database "
                    f"{result.database!r} (alias {database!r}): dropped "
                    f"{result.tables_dropped} table(s){extensions} in {result.seconds:.2f} s."
                )
            )
