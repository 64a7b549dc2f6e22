"""Writing rows: ``COPY``, Django's own ``INSERT`` and sequence resets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.management.color import no_style
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from psycopg import sql


def reset_sequences(connection: BaseDatabaseWrapper, models: Sequence[type[Model]]) -> None:
    """Set the sequences of ``models`` past their largest key, with Django's own statements,
    as ``loaddata`` does after loading."""
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)


def copy_rows(
    connection: BaseDatabaseWrapper, table: str, columns: Sequence[str], rows: Sequence[Any]
) -> None:
    """``COPY table (columns) FROM STDIN`` with ``rows`` of values ready for the database."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def insert_rows(model: type[Model], objs: Sequence[Any], *, using: str, **options: Any) -> Any:
    """Insert ``objs`` with Django's own ``INSERT`` (the manager's ``_insert``, as
    ``bulk_create`` and ``save_base`` do): ``options`` as it takes them (fields, raw,
    on_conflict, update_fields, unique_fields, returning_fields). Returns its rows."""
    return model._base_manager._insert(objs, using=using, **options)  # type: ignore[attr-defined]
