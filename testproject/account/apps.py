from __future__ import annotations

from django.apps import AppConfig


class AccountConfig(AppConfig):
    name = "testproject.account"
    label = "account"
    default_auto_field = "django.db.models.BigAutoField"
