from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import models


class VectorField(models.Field):  # type: ignore[type-arg]
    """A pgvector ``vector(n)`` column: needs the ``vector`` extension in the database."""

    description = "Vector of %(dimensions)s floats"

    def __init__(self, *args: Any, dimensions: int, **kwargs: Any) -> None:
        self.dimensions = dimensions
        super().__init__(*args, **kwargs)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        if not isinstance(self.dimensions, int) or self.dimensions < 1:
            errors.append(checks.Error("dimensions must be a positive int.", obj=self))
        return errors

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["dimensions"] = self.dimensions
        return name, path, args, kwargs

    def db_type(self, connection: Any) -> str:
        return f"vector({int(self.dimensions)})"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> list[float] | None:
        return self.to_python(value)

    def to_python(self, value: Any) -> list[float] | None:
        if value is None or isinstance(value, list):
            return value
        text = str(value).strip().lstrip("[").rstrip("]")
        return [float(part) for part in text.split(",")] if text else []

    def get_prep_value(self, value: Any) -> str | None:
        value = self.to_python(value)
        if value is None:
            return None
        return "[" + ",".join(repr(float(v)) for v in value) + "]"

    def value_to_string(self, obj: Any) -> str:
        # Fixtures hold the vector as text, e.g. "[0.1,0.2,0.3]", or null.
        return self.get_prep_value(self.value_from_object(obj))  # type: ignore[return-value]
