from __future__ import annotations

from pathlib import Path

import pytest

from django_resetdb.conf import DEFAULT_HOSTS, ResetDBSettings, get_settings
from django_resetdb.exceptions import Refused


def test_defaults(settings):
    del settings.DJANGO_RESETDB
    settings.DEBUG = True

    assert get_settings() == ResetDBSettings(
        enabled=True,
        hosts=("", "localhost", "127.0.0.1", "::1", "/*"),
        schemas=("public",),
        apps=None,
        exclude_apps=(),
        seeds=(),
        lock_timeout=5.0,
        backup_dir=Path(settings.BASE_DIR) / ".resetdb" / "backups",
        fast_build=True,
        snapshots=3,
        strategy="auto",
        regenerate="own",
        shared_ref=None,
    )
    assert DEFAULT_HOSTS == ("", "localhost", "127.0.0.1", "::1", "/*")


def test_enabled_follows_debug_unless_set(settings):
    settings.DJANGO_RESETDB = {}
    settings.DEBUG = False
    assert get_settings().enabled is False

    settings.DEBUG = True
    assert get_settings().enabled is True

    settings.DJANGO_RESETDB = {"ENABLED": False}
    assert get_settings().enabled is False


def test_user_values_are_merged_over_defaults(settings):
    settings.DJANGO_RESETDB = {"SCHEMAS": ["app", "reporting"], "APPS": ["catalog"]}

    merged = get_settings()

    assert merged.schemas == ("app", "reporting")
    assert merged.apps == ("catalog",)
    assert merged.hosts == DEFAULT_HOSTS
    assert merged.lock_timeout == 5.0


def test_cache_is_cleared_when_the_setting_changes(settings):
    settings.DJANGO_RESETDB = {"LOCK_TIMEOUT": 1}
    assert get_settings().lock_timeout == 1.0

    settings.DJANGO_RESETDB = {"LOCK_TIMEOUT": 2}

    assert get_settings().lock_timeout == 2.0


def test_backup_dir_is_relative_to_base_dir(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    settings.DJANGO_RESETDB = {"BACKUP_DIR": "var/migration-backups"}
    assert get_settings().backup_dir == tmp_path / "var" / "migration-backups"

    settings.DJANGO_RESETDB = {"BACKUP_DIR": "/srv/backups"}
    assert get_settings().backup_dir == Path("/srv/backups")


def test_enabled_is_only_a_real_true(settings):
    settings.DEBUG = True
    for value in ["false", "true", 1, "yes", "True"]:
        settings.DJANGO_RESETDB = {"ENABLED": value}
        assert get_settings().enabled is False, value

    settings.DJANGO_RESETDB = {}
    settings.DEBUG = "True"
    assert get_settings().enabled is False


def test_a_regenerate_value_that_is_not_own_or_all_refuses(settings):
    # A misspelt value must not regenerate the migrations the team shares.
    settings.DJANGO_RESETDB = {"REGENERATE": "everything"}
    with pytest.raises(Refused) as refused:
        get_settings()
    assert str(refused.value) == (
        "DJANGO_RESETDB['REGENERATE'] must be 'own' or 'all', not 'everything'; nothing was done."
    )
    settings.DJANGO_RESETDB = {"SHARED_REF": ""}
    with pytest.raises(Refused):
        get_settings()
