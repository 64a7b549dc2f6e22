from __future__ import annotations

from typing import Any

from django.db import models


class CaseInsensitiveCharField(models.CharField):  # type: ignore[type-arg]
    """A ``citext`` column: values equal but for case are equal, in lookups and unique
    constraints. Needs the ``citext`` extension in the database.

    Django 5.1 removed ``django.contrib.postgres.fields.CICharField``; this stands in for
    it. Like the text types, ``citext`` has no length: ``max_length`` is checked by
    validation only.
    """

    description = "Case-insensitive text (up to %(max_length)s)"

    def db_type(self, connection: Any) -> str:
        return "citext"

    def to_python(self, value: Any) -> str | None:
        value = super().to_python(value)
        if value is None:
            return None
        # Names typed with stray spaces would otherwise be different names.
        return " ".join(value.split())

    def get_prep_value(self, value: Any) -> Any:
        # Values set in code reach the database without to_python: tidy them here too.
        return self.to_python(super().get_prep_value(value))
