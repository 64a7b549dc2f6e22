"""``manage.py resetmigrations``: parse, call ``regenerate.reset_migrations()``, print."""

from __future__ import annotations

import contextlib
from argparse import ArgumentParser
from typing import Any

from django_resetdb import backups, regenerate
from django_resetdb.conf import SETTING_NAME, get_settings
from django_resetdb.management.base import PLANNING_FILES, ResetCommand

LATEST = "latest"


class Command(ResetCommand):
    interrupted_message = "Interrupted before any file was touched; nothing was changed."
    help = (
        "Regenerate the migrations of the project's own apps from their models, with a "
        "backup to go back to. Does not touch the database."
    )

    help_epilog = """\
files:
  resetmigrations DELETES AND REWRITES the migration files of the selected apps (by
  default the project's own; never an installed package's), after a backup in
  .resetdb/backups (DJANGO_RESETDB["BACKUP_DIR"]); every file is named as rewrite,
  delete or add. --restore puts the latest backup back, --dry-run changes nothing.
  Apps with hand-written operations are refused unless --force. To keep an app's
  files, leave it out of the labels or of DJANGO_RESETDB["APPS"], or list it in
  DJANGO_RESETDB["EXCLUDE_APPS"].

verbosity (-v):
  0  nothing but errors (and the question, unless --no-input)
  1  the plan: each app and each file it rewrites, deletes or adds, then a last line
     (the default)
  2  also the operations each new file holds, the apps skipped and why, the backup
  3  with --dry-run, also the full text of each new file"""

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "app_labels",
            nargs="*",
            metavar="app_label",
            help=(
                f"Apps to regenerate. Default: {SETTING_NAME}['APPS'], else the project's own apps."
            ),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show the plan and what would be written, change nothing.",
        )
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation. Never skips the other guards.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "Go ahead even when hand-written operations (RunPython, RunSQL, ...) would "
                "be lost; they stay in the backup."
            ),
        )
        self.add_history_arguments(parser)
        parser.add_argument(
            "--restore",
            nargs="?",
            const=LATEST,
            default=None,
            metavar="BACKUP",
            help="Put back the files of a backup (default: the latest), byte for byte.",
        )
        parser.add_argument(
            "--list-backups", action="store_true", help="List the backups, oldest first."
        )

    def handle(
        self,
        *,
        app_labels: list[str],
        dry_run: bool,
        interactive: bool,
        force: bool,
        restore: str | None,
        list_backups: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        if list_backups:
            self._list_backups()
            return
        from django_resetdb import guard

        guard.check_enabled("resetmigrations")
        if restore is not None:
            conf = get_settings()
            with backups.files_lock(conf.backup_dir, conf.lock_timeout):
                self._restore(None if restore == LATEST else restore, verbosity, dry_run)
            return
        log = self.log(verbosity)
        # Planning a long history takes seconds: past one, a line says so, until the plan
        # is shown (and before any question).
        planning = contextlib.ExitStack()
        planning.enter_context(self.show_progress(verbosity).seconds(PLANNING_FILES, after=1.0))

        def planned(plan: regenerate.RegenerationPlan) -> None:
            planning.close()
            if not plan.apps:
                log("No apps to regenerate: nothing selected has models or migrations.", 1)
                return
            if verbosity >= 1 or dry_run:
                self.stdout.write("Migrations to regenerate:" if plan.changed else "Migrations:")
                for line in plan.lines(verbosity):
                    self.stdout.write(line)
            for item in plan.hand_written:
                self.stderr.write(f"  hand-written: {item.describe(plan.root)}")
            if plan.hand_written and force:
                self.stderr.write(self.style.WARNING(regenerate.forced_loss(plan)))

        with planning:
            applied = regenerate.reset_migrations(
                app_labels,
                force=force,
                dry_run=dry_run,
                log=log,
                planned=planned,
                confirm=self._confirm if interactive else None,
            )
        plan = applied.plan
        if not plan.apps:
            return
        if not plan.changed:
            log(
                self.style.SUCCESS(
                    f"No changes: the migrations of {_names(plan.apps)} already match "
                    f"the models; no file was touched."
                ),
                1,
            )
            return
        if dry_run:
            if verbosity >= 3:
                for app in plan.changed:
                    for new in app.new_files:
                        self.stdout.write(f"--- {new.path}")
                        self.stdout.write(new.text)
            self.stdout.write(
                f"Dry run: would delete {len(plan.files_to_delete())} and write "
                f"{sum(len(app.new_files) for app in plan.changed)} file(s) in "
                f"{_names(plan.changed)}; nothing was changed."
            )
            return
        note = regenerate.history_note(plan)
        if note:
            self.stderr.write(self.style.WARNING(note))
        assert applied.backup is not None
        unchanged = f"; {len(plan.unchanged)} unchanged" if plan.unchanged else ""
        log(
            self.style.SUCCESS(
                f"Regenerated the migrations of {_names(plan.changed)} ({len(applied.written)} "
                f"file(s)){unchanged}, verified with makemigrations --check. "
                f"Backup: {applied.backup.path}"
            ),
            1,
        )

    def _confirm(self, plan: regenerate.RegenerationPlan) -> None:
        count = len(plan.files_to_delete())
        self.ask_yes(
            f"Delete and rewrite the {count} migration file(s) above (a backup is kept)? "
            f"Type 'yes' to continue: ",
            refusal=(
                "resetmigrations refused: the answer was not 'yes'; nothing was changed "
                "(pass --no-input to skip the question)."
            ),
        )

    def _list_backups(self) -> None:
        root = get_settings().backup_dir
        found = backups.list_backups(root)
        if not found:
            self.stdout.write(f"No backups in {root}.")
            return
        for backup in found:
            self.stdout.write(
                f"{backup.name}  {backup.created[:19].replace('T', ' ')}  {backup.status:<11}  "
                f"{len(backup.originals)} file(s)  {', '.join(backup.apps)}"
            )
        self.stdout.write(f"{len(found)} backup(s) in {root}.")

    def _restore(self, name: str | None, verbosity: int, dry_run: bool) -> None:
        backup = backups.find_backup(get_settings().backup_dir, name)
        result = backup.restore(self.log(verbosity), dry_run=dry_run)
        if dry_run:
            self.stdout.write(
                f"Dry run: restoring backup {backup.name} would put back "
                f"{len(result.restored)} file(s) and remove {len(result.removed)}; nothing "
                f"was changed."
            )
        elif verbosity >= 1:
            aside = (
                f" {len(result.displaced)} file(s) edited since the reset kept aside in "
                f"{result.aside}."
                if result.displaced
                else ""
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Restored backup {backup.name}: {len(result.restored)} file(s) put back, "
                    f"{len(result.removed)} removed, {len(result.unchanged)} already equal."
                    f"{aside}"
                )
            )


def _names(plans: list[regenerate.AppRegeneration]) -> str:
    return ", ".join(app.label for app in plans)
