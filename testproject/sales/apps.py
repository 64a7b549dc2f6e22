from __future__ import annotations

from django.apps import AppConfig


class SalesConfig(AppConfig):
    name = "testproject.sales"
    label = "sales"
    default_auto_field = "django.db.models.BigAutoField"
