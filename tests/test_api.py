"""The Python API, in-process, on a schema of its own in pytest-django's test database."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from psycopg import sql

from django_resetdb import Refused, ResetError, reset_schemas
from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def schema():
    name = f"api_{uuid.uuid4().hex[:8]}"
    dbname = connection.settings_dict["NAME"]
    with connect(dbname) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE TABLE {}.t (n int)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS 'scratch'").format(sql.Identifier(name)))
    yield name
    with connect(dbname) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def tables_in(schema):
    with connect(connection.settings_dict["NAME"]) as conn:
        return conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]
        ).fetchall()


def test_reset_schemas_from_python(schema):
    result = reset_schemas("default", [schema])

    assert result.schemas == (schema,)
    assert result.tables_dropped == 1
    assert tables_in(schema) == []
    with connect(connection.settings_dict["NAME"]) as conn:
        comment = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            [schema],
        ).fetchone()
    assert comment == ("scratch",)


def test_call_command_refusal_carries_exit_status_3(schema, settings):
    settings.DJANGO_RESETDB = {"ENABLED": False}

    with pytest.raises(CommandError) as excinfo:
        call_command("resetschema", "--schema", schema, "--no-input")

    assert excinfo.value.returncode == 3
    assert isinstance(excinfo.value.__cause__, Refused)
    assert tables_in(schema) == [("t",)]


def test_errors_are_command_errors_for_scripts(schema):
    with pytest.raises(ResetError) as excinfo:
        reset_schemas("default", [schema, "does_not_exist"])

    assert excinfo.value.returncode == 1
    assert isinstance(excinfo.value, CommandError)
    assert tables_in(schema) == [("t",)]


def count_rows(table):
    with connect(connection.settings_dict["NAME"]) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))


def test_seed_from_python_runs_the_settings_seeds_and_reports_each(settings):
    import django_resetdb

    lines = []
    result = django_resetdb.seed(log=lambda message, level: lines.append((level, message)))

    assert [report.entry for report in result.reports] == list(settings.DJANGO_RESETDB["SEEDS"])
    assert [report.objects for report in result.reports] == [4, 2, 8, 4, 8]
    assert result.objects == 26
    assert result.summary().startswith(
        f"Seeded database {connection.settings_dict['NAME']!r} (alias 'default'): 5 seed(s), "
        "26 object(s) in "
    )
    assert [level for level, _ in lines] == [2, 1, 1, 1, 1, 1]
    assert count_rows("sales_orderline").fetchone() == (3,)


def test_seed_from_python_refuses_when_not_enabled(settings):
    import django_resetdb

    settings.DJANGO_RESETDB = {**settings.DJANGO_RESETDB, "ENABLED": False}

    with pytest.raises(Refused) as refusal:
        django_resetdb.seed(["catalog"])

    assert refusal.value.returncode == 3
    assert count_rows("catalog_artifact").fetchone() == (0,)
