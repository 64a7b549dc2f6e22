"""``manage.py seed``: parse, call ``seeding.seed()``, print."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django_resetdb.conf import SETTING_NAME
from django_resetdb.management.base import ResetCommand


class Command(ResetCommand):
    help = (
        "Load the seeds: fixture labels (the rows loaddata would leave, loaded in bulk) and "
        "Python callables, in order, in one transaction."
    )

    help_epilog = """\
verbosity (-v):
  0  nothing but errors
  1  a line a seed and a last line (the default; on a terminal, an in-place progress
     line too)
  2  also how the objects were written (COPY, bulk INSERT, one by one) and why
  3  the same as 2"""

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "labels",
            nargs="*",
            metavar="label",
            help=(
                f"Fixture labels or dotted paths of callables, run instead of "
                f"{SETTING_NAME}['SEEDS']."
            ),
        )
        self.add_database_argument(parser)
        parser.add_argument(
            "--list",
            action="store_true",
            dest="list_only",
            help="Show the seeds resolved to files and callables; load nothing.",
        )
        parser.add_argument(
            "-e",
            "--exclude",
            action="append",
            default=[],
            help="An app_label or app_label.ModelName whose fixture objects to skip. Repeatable.",
        )

    def handle(
        self,
        *,
        labels: list[str],
        database: str,
        list_only: bool,
        exclude: list[str],
        verbosity: int,
        **options: Any,
    ) -> None:
        from django_resetdb import guard, seeding

        entries = tuple(labels) if labels else seeding.configured_seeds()
        if list_only:
            seeds = seeding.resolve_seeds(entries, database=database)
            self.stdout.write(f"{len(seeds)} seed(s) for database alias {database!r}, in order:")
            for line in seeding.list_lines(seeds):
                self.stdout.write(line)
            return
        if not entries:
            guard.check_seed(database)
            self.stdout.write(f"No seeds: {SETTING_NAME}['SEEDS'] is empty and no label was given.")
            return
        result = seeding.seed(
            entries,
            database=database,
            exclude=exclude,
            log=self.log(verbosity),
            progress=self.show_progress(verbosity),
        )
        if verbosity >= 2:
            self.stdout.write(f"  {result.paths_line()}")
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(result.summary()))
