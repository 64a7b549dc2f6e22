"""Rebuild a PostgreSQL development database after model churn, safely and fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# First: without the process's start from the OS, the summaries count from here.
from django_resetdb import clock  # noqa: F401

__version__ = "0.1.0.dev0"

__all__ = ["Refused", "ResetError", "reset", "reset_migrations", "reset_schemas", "seed"]

if TYPE_CHECKING:
    from django_resetdb.exceptions import Refused, ResetError
    from django_resetdb.pipeline import reset
    from django_resetdb.regenerate import reset_migrations
    from django_resetdb.schemas import reset_schemas
    from django_resetdb.seeding import seed


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package does not import Django's database layer
    # before settings are configured.
    if name in ("Refused", "ResetError"):
        from django_resetdb import exceptions

        return getattr(exceptions, name)
    if name == "reset_migrations":
        from django_resetdb.regenerate import reset_migrations

        return reset_migrations
    if name == "reset_schemas":
        from django_resetdb.schemas import reset_schemas

        return reset_schemas
    if name == "reset":
        from django_resetdb.pipeline import reset

        return reset
    if name == "seed":
        from django_resetdb.seeding import seed

        return seed
    raise AttributeError(f"module 'django_resetdb' has no attribute {name!r}")
