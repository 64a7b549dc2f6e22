"""The app's configuration: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class ResetDBConfig(AppConfig):
    name = "django_resetdb"
    verbose_name = "Reset DB"

    def ready(self) -> None:
        from django_resetdb import checks as resetdb_checks

        checks.register(resetdb_checks.check_settings)
        checks.register(resetdb_checks.check_driver)
        checks.register(resetdb_checks.check_distributions)
