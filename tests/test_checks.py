from __future__ import annotations

from typing import Any

import pytest
from django.core import checks

from django_resetdb.checks import check_settings


def ids(messages):
    return [message.id for message in messages]


def test_checks_are_registered():
    registered: list[Any] = list(checks.registry.registry.get_checks())

    assert check_settings in registered


def test_run_checks_reports_our_errors(settings):
    settings.DJANGO_RESETDB = {"SCHEMAS": "public"}

    messages = checks.run_checks()

    assert "django_resetdb.E003" in ids(messages)


def test_demo_settings_are_clean():
    assert check_settings() == []


def test_not_a_dict(settings):
    settings.DJANGO_RESETDB = ["ENABLED"]

    messages = check_settings()

    assert ids(messages) == ["django_resetdb.E001"]
    assert messages[0].msg == "DJANGO_RESETDB must be a dict (or another mapping), not list."


def test_unknown_key(settings):
    settings.DJANGO_RESETDB = {"SCHEMA": ["public"]}

    messages = check_settings()

    assert ids(messages) == ["django_resetdb.E002"]
    assert messages[0].msg == "DJANGO_RESETDB has an unknown key 'SCHEMA'."
    assert messages[0].hint == (
        "Known keys: ENABLED, HOSTS, SCHEMAS, APPS, EXCLUDE_APPS, SEEDS, LOCK_TIMEOUT, BACKUP_DIR, "
        "FAST_BUILD, SNAPSHOTS, STRATEGY, REGENERATE, SHARED_REF, IGNORED_SETTINGS, BACKUPS."
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("ENABLED", "yes", "a bool (or None for DEBUG)"),
        ("ENABLED", "false", "a bool (or None for DEBUG)"),
        ("ENABLED", 1, "a bool (or None for DEBUG)"),
        ("HOSTS", "localhost", "a list of host names or patterns"),
        ("HOSTS", ["localhost", 5432], "a list of host names or patterns"),
        ("SCHEMAS", [], "a non-empty list of schema names"),
        ("SCHEMAS", "public", "a non-empty list of schema names"),
        ("APPS", "catalog", "None or a list of app labels"),
        ("EXCLUDE_APPS", None, "a list of app labels"),
        ("SEEDS", [1], "a list of fixture labels or dotted paths"),
        ("LOCK_TIMEOUT", 0, "a positive number of seconds"),
        ("LOCK_TIMEOUT", True, "a positive number of seconds"),
        ("LOCK_TIMEOUT", "5", "a positive number of seconds"),
        ("BACKUP_DIR", "", "None or a folder path"),
        ("BACKUP_DIR", 3, "None or a folder path"),
        ("FAST_BUILD", "yes", "a bool"),
        ("SNAPSHOTS", -1, "a number of snapshots to keep (0 turns the cache off)"),
        ("SNAPSHOTS", True, "a number of snapshots to keep (0 turns the cache off)"),
        ("STRATEGY", "swap", "one of 'auto', 'in-place', 'new-database'"),
        ("IGNORED_SETTINGS", [1], "a list of setting names"),
        ("BACKUPS", 0, "None (keep every backup) or a number of backups to keep, at least 1"),
        ("BACKUPS", "3", "None (keep every backup) or a number of backups to keep, at least 1"),
    ],
)
def test_wrong_types(settings, key, value, expected):
    settings.DJANGO_RESETDB = {key: value}

    messages = check_settings()

    assert ids(messages) == ["django_resetdb.E003"]
    assert messages[0].msg == f"DJANGO_RESETDB[{key!r}] must be {expected}, not {value!r}."


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x" * 64, "schema name 'xxxxxxxxxxxxxxxxxxxx...' is 64 bytes long; PostgreSQL names "
                   "are at most 63 bytes"),
        ("pg_toast", "schema 'pg_toast' is a PostgreSQL system schema"),
        ("", "schema names must not be empty"),
        ("a\x00b", "schema name 'a\\x00b' contains a NUL character"),
    ],
)  # fmt: skip
def test_invalid_schema_names(settings, name, problem):
    settings.DJANGO_RESETDB = {"SCHEMAS": ["public", name]}

    messages = check_settings()

    assert ids(messages) == ["django_resetdb.E004"]
    assert messages[0].msg == f"DJANGO_RESETDB['SCHEMAS']: {problem}."


def test_enabled_while_debug_is_false_warns(settings):
    settings.DEBUG = False
    settings.DJANGO_RESETDB = {"ENABLED": True}

    assert ids(check_settings()) == ["django_resetdb.W001"]

    settings.DEBUG = True
    assert check_settings() == []


def test_a_non_postgresql_alias_is_no_concern_of_the_checks(scratch_db, manage, tmp_path):
    # A system check runs before every command: one about an alias that no command of
    # ours is pointed at would be noise on each of them.
    extra = f"""
DATABASES = {{**DATABASES, "legacy": {{
    "ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "legacy.sqlite3")!r},
}}}}
"""
    result = manage("check", db=scratch_db, extra_settings=extra)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "System check identified no issues (0 silenced).\n"
