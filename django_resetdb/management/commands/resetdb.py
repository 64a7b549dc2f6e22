"""``manage.py resetdb``: parse, call ``pipeline``, print."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from django_resetdb.exceptions import refuse_string
from django_resetdb.management.base import PLANNING, ResetCommand
from django_resetdb.output import one_line


class Command(ResetCommand):
    help = (
        "Rebuild the database: regenerate the project's migrations, reset the schemas, "
        "migrate and seed; all or nothing."
    )

    help_epilog = """\
migration files:
  By default resetdb DELETES AND REWRITES the migration files of the project's own
  apps (those under the project's folder, not installed packages) from their models,
  and names each file it rewrites, deletes or adds. A backup is kept first:
  `manage.py resetmigrations --restore` puts the files back. To keep them, pass
  --keep-migrations, or narrow DJANGO_RESETDB["APPS"] / ["EXCLUDE_APPS"]. Apps whose
  migrations hold hand-written operations are kept as they are, and said so.

verbosity (-v):
  0  nothing but errors
  1  the target, a line a step (the files rewritten, deleted or added among them),
     and a last line saying what was rebuilt (the default; on a terminal, an in-place
     progress line too)
  2  also each migration as migrate applies it, each seed, and the details of each
     step (the backup, the snapshots dropped, the apps skipped)
  3  the same as 2"""

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            choices=tuple(connections),
            help="Database alias to rebuild; repeat for several. Default: 'default'.",
        )
        self.add_input_arguments(parser)
        parser.add_argument(
            "--keep-migrations",
            action="store_true",
            help="Apply the migration files as they are instead of regenerating them.",
        )
        self.add_history_arguments(parser)
        parser.add_argument("--no-seed", action="store_true", help="Do not run SEEDS.")
        parser.add_argument(
            "--no-snapshot",
            action="store_true",
            help="Neither restore a snapshot nor keep one: rebuild, as if the cache were off.",
        )
        parser.add_argument(
            "--list-snapshots",
            action="store_true",
            help="List the snapshots kept for the database, and change nothing.",
        )
        parser.add_argument(
            "--drop-snapshots",
            action="store_true",
            help="Drop every snapshot kept for the database, and change nothing else.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show the targets and the plan, change nothing.",
        )
        parser.add_argument(
            "--sql",
            action="store_true",
            help=(
                "With --dry-run: also show the SQL each database would run, every "
                "migration's (which takes a while on a long history)."
            ),
        )

    def handle(
        self,
        *,
        databases: list[str] | None,
        interactive: bool,
        keep_migrations: bool,
        no_seed: bool,
        no_snapshot: bool,
        list_snapshots: bool,
        drop_snapshots: bool,
        dry_run: bool,
        terminate_blockers: bool,
        verbosity: int,
        sql: bool = False,
        **options: Any,
    ) -> None:
        from django_resetdb import pipeline

        refuse_string(databases, "the databases")
        if sql and not dry_run:
            raise CommandError(
                "--sql goes with --dry-run (it shows what would run); nothing was done."
            )
        aliases = databases or [DEFAULT_DB_ALIAS]
        if list_snapshots or drop_snapshots:
            self._snapshots(aliases, drop=drop_snapshots)
            return
        # A large project takes seconds to plan: past one, a line says what is going on.
        with self.show_progress(verbosity).seconds(PLANNING, after=1.0):
            plan = pipeline.plan_reset(
                aliases, keep_migrations=keep_migrations, seed=not no_seed, snapshot=not no_snapshot
            )
        if dry_run:
            lines = pipeline.dry_run_lines(
                plan, terminate_blockers=terminate_blockers, verbosity=verbosity, sql=sql
            )
            for line in lines:
                self.stdout.write(line)
            self.stdout.write("Dry run: nothing was changed.")
            return
        result = pipeline.run_plan(
            plan,
            interactive=interactive,
            terminate_blockers=terminate_blockers,
            log=self.log(verbosity),
            migrate_output=self.stdout if verbosity >= 2 else None,
            progress=self.show_progress(verbosity),
            # What the user waited for: start-up (from the command line) and planning too.
            started=self.started,
        )
        # From here a Ctrl-C, or any failure, stops only the printing: nothing is undone.
        self.interrupted_message = "Interrupted after the reset had finished: it is complete."
        if verbosity >= 1:
            try:
                summary = result.summary()
            except Exception as exc:
                raise CommandError(
                    f"{type(exc).__name__}: {one_line(exc).rstrip('.')}; this came after the "
                    "reset had finished: it is complete."
                ) from exc
            self.stdout.write(self.style.SUCCESS(summary))

    def _snapshots(self, aliases: list[str], *, drop: bool) -> None:
        from django_resetdb import snapshots

        if drop:
            for alias, database, count, states in snapshots.drop_all(aliases, self.log(1)):
                held = f" and {states} migrated state(s)" if states else ""
                self.stdout.write(
                    f"Dropped {count} snapshot(s){held} of database {database!r} (alias {alias!r})."
                )
            return
        for listing in snapshots.list_all(aliases):
            # The snapshots first, then the build cache's migrated states.
            for snapshot in sorted(listing.kept, key=lambda s: s.is_state):
                self.stdout.write(f"  {snapshot.describe()}")
            for name in listing.half_made:
                self.stdout.write(
                    f"  {name}  left half-made by an interrupted run; the next run drops it"
                )
            for name, replaced_size in listing.replaced:
                self.stdout.write(
                    f"  {name}  {replaced_size / 2**20:.0f} MB  replaced by a restore or a "
                    "swap; the next run drops it"
                )
            self.stdout.write(listing.summary())
