"""The modes of deferrable constraints inside the reset's one transaction."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from django_resetdb.postgres.connections import _rows, _run


def check_deferred_constraints(connection: BaseDatabaseWrapper) -> None:
    """Check the deferred constraints now rather than at commit, so that with several
    databases a violation shows before the first of them commits."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"))


def end_of_migration(connection: BaseDatabaseWrapper) -> None:
    """Do in the reset's one transaction what the commit after each migration does for
    plain ``migrate``: fire the deferred checks the migration left pending (PostgreSQL
    refuses to ALTER a table with pending trigger events), then put every deferrable
    constraint back to its initial mode, as a new transaction would have it."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL IMMEDIATE"))
    restore_constraint_modes(connection)


def restore_constraint_modes(connection: BaseDatabaseWrapper) -> None:
    """Put every deferrable constraint back in the mode it was declared with, as a new
    transaction has it. Django's schema editor leaves some checked immediately for the
    rest of the transaction (a foreign key it adds to an existing table, and all of them
    once it fills in the empty values of a column it makes ``NOT NULL``)."""
    _run(connection, sql.SQL("SET CONSTRAINTS ALL DEFERRED"))
    immediate = _rows(
        connection,
        "SELECT DISTINCT n.nspname, c.conname FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.condeferrable AND NOT c.condeferred "
        # Only names this session can use: SET CONSTRAINTS needs the schema's USAGE, and
        # another session's temporary schema is not this session's to name.
        "AND has_schema_privilege(n.oid, 'USAGE') "
        "AND (n.nspname NOT LIKE 'pg\\_temp\\_%%' OR n.oid = pg_my_temp_schema()) "
        # SET CONSTRAINTS names every constraint of that name in the schema: where one
        # of them is initially deferred, deferred is the mode that refuses nothing early.
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint d WHERE d.connamespace = "
        "c.connamespace AND d.conname = c.conname AND d.condeferred) ORDER BY 1, 2",
    )
    if immediate:
        names = sql.SQL(", ").join(
            sql.Identifier(schema, name) for schema, name in dict.fromkeys(immediate)
        )
        _run(connection, sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(names))
