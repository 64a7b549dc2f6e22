"""Validation of the SQL identifiers users give us (schema names)."""

from __future__ import annotations

# PostgreSQL's NAMEDATALEN - 1. Longer names are silently truncated by the
# server, which would make us act on a different schema than the one named.
MAX_IDENTIFIER_BYTES = 63

SYSTEM_SCHEMAS = frozenset({"information_schema"})


def schema_name_problem(name: object) -> str | None:
    """Return why ``name`` cannot be a schema to reset, or ``None`` when it can."""
    if not isinstance(name, str):
        return f"schema names must be strings, not {type(name).__name__}"
    if not name:
        return "schema names must not be empty"
    if "\x00" in name:
        return f"schema name {name!r} contains a NUL character"
    size = len(name.encode())
    if size > MAX_IDENTIFIER_BYTES:
        return (
            f"schema name {name[:20] + '...'!r} is {size} bytes long; "
            f"PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes"
        )
    if name.lower().startswith("pg_") or name.lower() in SYSTEM_SCHEMAS:
        return f"schema {name!r} is a PostgreSQL system schema"
    return None
