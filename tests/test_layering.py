"""Only the postgres layer (``django_resetdb/postgres/``) sends SQL: every other module of
the package calls it. Read from the modules' source (no database): no cursor calls, no
``psycopg.sql``, no string that is a statement."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import django_resetdb

PACKAGE = Path(django_resetdb.__file__).parent
LAYER = PACKAGE / "postgres"

# What a cursor or a connection is called with to send SQL.
SENDING = frozenset({"execute", "executemany", "copy"})
COMPOSING = frozenset({"SQL", "Identifier", "Literal", "Composed", "Placeholder"})
KEYWORDS = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "SET", "RESET",
    "SHOW", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "LOCK", "GRANT",
    "REVOKE", "COMMENT", "TRUNCATE", "COPY", "VACUUM", "ANALYZE", "REINDEX", "CLUSTER",
    "EXPLAIN", "WITH", "DO", "CALL", "DISCARD", "LISTEN", "NOTIFY", "REASSIGN", "REFRESH",
    "START", "END", "ABORT",
)  # fmt: skip
# Upper case as SQL is written, then what a statement has next (a word, a quoted name,
# a placeholder, or the ";" that ends it): English text says "Set" or "set".
STATEMENT = re.compile(rf"\s*(?:{'|'.join(KEYWORDS)})(?:\s+[A-Za-z_\"*({{]|\s*;)")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the constants that are docstrings (of the module, classes, functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                found.add(id(body[0].value))
    return found


def _is_layer_or_super(receiver: ast.expr) -> bool:
    """``postgres.execute(...)`` calls the layer; ``super().execute(...)`` is Django's
    ``BaseCommand.execute``."""
    if isinstance(receiver, ast.Name):
        return receiver.id == "postgres"
    return (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Name)
        and receiver.func.id == "super"
    )


def offences(source: str, filename: str) -> list[str]:
    """``file:line: what`` for each place ``source`` sends or composes SQL itself."""
    tree = ast.parse(source, filename)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        what = ""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in SENDING and not _is_layer_or_super(node.func.value):
                what = f"calls .{node.func.attr}()"
        elif isinstance(node, ast.Import):
            if any(alias.name.startswith("psycopg.sql") for alias in node.names):
                what = "imports psycopg.sql"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("psycopg.sql") or (
                module == "psycopg" and any(alias.name == "sql" for alias in node.names)
            ):
                what = "imports psycopg.sql"
        elif isinstance(node, ast.Attribute):
            if (
                node.attr in COMPOSING
                and isinstance(node.value, ast.Name)
                and node.value.id == "sql"
            ) or (
                node.attr == "sql"
                and isinstance(node.value, ast.Name)
                and node.value.id == "psycopg"
            ):
                what = f"uses {ast.unparse(node)}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and STATEMENT.match(node.value)
        ):
            what = f"has the statement {node.value.strip()[:40]!r}"
        if what:
            found.append(f"{filename}:{line}: {what}")
    return sorted(found, key=lambda f: (int(f.split(":")[1]), f))


def test_only_the_postgres_layer_sends_sql():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if LAYER not in p.parents)
    assert len(modules) > 20  # the package's modules were found

    found = [
        offence
        for path in modules
        for offence in offences(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    ]

    assert found == []


def test_the_checker_names_each_way_of_sending_sql():
    planted = '''\
"""SELECT in a docstring is English."""
import psycopg.sql
from psycopg import sql


def count(connection, cursor, table):
    """Not SQL: a docstring. DROP TABLE is allowed here."""
    cursor.execute("SELECT count(*) FROM " + table)
    cursor.executemany("INSERT INTO t VALUES (%s)", [[1]])
    with cursor.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))):
        pass
    yield "  BEGIN;"
    yield f"ALTER TABLE {table} ADD x int"
    return psycopg.sql.Literal(1)
'''

    found = offences(planted, "planted.py")

    assert found == [
        "planted.py:2: imports psycopg.sql",
        "planted.py:3: imports psycopg.sql",
        "planted.py:8: calls .execute()",
        "planted.py:8: has the statement 'SELECT count(*) FROM'",
        "planted.py:9: calls .executemany()",
        "planted.py:9: has the statement 'INSERT INTO t VALUES (%s)'",
        "planted.py:10: calls .copy()",
        "planted.py:10: has the statement 'COPY {} FROM STDIN'",
        "planted.py:10: uses sql.Identifier",
        "planted.py:10: uses sql.SQL",
        "planted.py:12: has the statement 'BEGIN;'",
        "planted.py:13: has the statement 'ALTER TABLE'",
        "planted.py:14: uses psycopg.sql",
    ]


def test_the_checker_lets_english_and_the_layers_own_calls_be():
    clean = '''\
from django_resetdb import postgres


class Command(BaseCommand):
    def execute(self, *args, **options):
        """SELECT, DROP and COMMIT in a docstring."""
        postgres.execute(connection, postgres.create_schemas_sql(["a"]))
        return super().execute(*args, **options)


COMMITTING = "committing"
MESSAGES = ["Set up the database.", "Create a snapshot", "DROP", "Showing the plan"]
'''

    assert offences(clean, "clean.py") == []
