from __future__ import annotations

from django_resetdb.conf import DEFAULT_HOSTS, ResetDBSettings, get_settings


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
