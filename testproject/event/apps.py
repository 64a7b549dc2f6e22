from __future__ import annotations

from django.apps import AppConfig


class EventConfig(AppConfig):
    name = "testproject.event"
    label = "event"
    default_auto_field = "django.db.models.BigAutoField"
