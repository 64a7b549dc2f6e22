from __future__ import annotations

from django.apps import AppConfig


class SeedCasesConfig(AppConfig):
    name = "tests.seedcases"
    label = "seedcases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tests.seedcases import receivers  # noqa: F401
