"""Writing rows: ``COPY``, Django's own ``INSERT`` and sequence resets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from django.core.management.color import no_style
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from psycopg import sql

# Sequence resets sent in one round trip.
SEQUENCE_BATCH = 500


def reset_sequences(connection: BaseDatabaseWrapper, models: Sequence[type[Model]]) -> None:
    """Set the sequences of ``models`` past their largest key, with Django's own statements,
    as ``loaddata`` does after loading."""
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    # In one round trip: one statement per model, and a seed may load hundreds of them.
    with connection.cursor() as cursor:
        if not isinstance(cursor.cursor, psycopg.ClientCursor):
            # Server-side binding takes one statement at a time.
            for statement in statements:
                cursor.execute(statement)
            return
        for start in range(0, len(statements), SEQUENCE_BATCH):
            cursor.execute("\n".join(
                s if s.rstrip().endswith(";") else f"{s};"
                for s in statements[start : start + SEQUENCE_BATCH]
            ))  # fmt: skip


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
