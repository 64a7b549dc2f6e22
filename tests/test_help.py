"""What ``--help`` tells: the verbosity levels, the exit statuses, and for the commands
that rewrite migration files, that they do and how to keep them."""

from __future__ import annotations

import pytest
from django.core.management import load_command_class

COMMANDS = ["resetdb", "resetmigrations", "resetschema", "seed"]


def help_text(name: str) -> str:
    command = load_command_class("django_resetdb", name)
    return command.create_parser("manage.py", name).format_help()


@pytest.mark.parametrize("name", COMMANDS)
def test_help_says_the_verbosity_levels_and_the_exit_statuses(name):
    text = help_text(name)

    verbosity = text.index("\nverbosity (-v):\n")
    statuses = text.index("\nexit status:\n")
    assert verbosity < statuses
    for level in ("0", "1", "2"):
        assert f"\n  {level}  " in text[verbosity:statuses]
    assert "\n  3    refused by a guard (ENABLED, HOSTS, the protected marker" in text[statuses:]
    assert "\n  130  interrupted (Ctrl-C)" in text[statuses:]
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("resetdb", "--keep-migrations"),
        ("resetmigrations", "--restore puts the latest backup back"),
    ],
)
def test_help_of_the_commands_that_rewrite_files_says_so_and_how_to_keep_them(name, keep):
    text = " ".join(help_text(name).split())

    assert "DELETES AND REWRITES the migration files" in text
    assert keep in text
    assert 'DJANGO_RESETDB["EXCLUDE_APPS"]' in text or '["EXCLUDE_APPS"]' in text
