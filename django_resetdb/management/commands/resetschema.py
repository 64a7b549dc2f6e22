"""``manage.py resetschema``: parse, call ``schemas.reset_schemas()``, print."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django_resetdb.conf import get_settings
from django_resetdb.exceptions import refuse_string
from django_resetdb.management.base import ResetCommand


class Command(ResetCommand):
    help = (
        "Drop and recreate PostgreSQL schemas (default: DJANGO_RESETDB['SCHEMAS']), keeping "
        "their owner, privileges, default privileges, comment and extensions."
    )

    help_epilog = """\
verbosity (-v):
  0  nothing but errors
  1  the target and a last line saying what was dropped (the default)
  2  also each schema dropped and each extension restored"""

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--schema",
            action="append",
            dest="schemas",
            metavar="NAME",
            help="Schema to reset; repeat for several. Default: DJANGO_RESETDB['SCHEMAS'].",
        )
        self.add_database_arguments(parser)

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
        from django_resetdb import guard
        from django_resetdb.schemas import reset_schemas, validate_schema_names

        refuse_string(schemas, "the schemas")
        names = validate_schema_names(schemas or get_settings().schemas)
        target = guard.check(database, "resetschema", names)
        self.confirm(target, "resetschema", interactive=interactive, verbosity=verbosity)
        result = reset_schemas(
            database, names, terminate_blockers=terminate_blockers, log=self.log(verbosity)
        )
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(result.summary()))
