"""The benchmark's synthetic projects migrate and load as Django itself would."""

from __future__ import annotations

from psycopg import sql

from bench.synthetic import Shape, generate
from tests.conftest import ProjectCopy


def test_synthetic_project_migrates_and_loads_every_row(tmp_path, scratch_db):
    shape = Shape(apps=2, models=4, rows=6)
    labels = generate(tmp_path / "synthetic", shape)
    project = ProjectCopy(tmp_path / "synthetic", scratch_db.url(), settings="synth.settings")

    for args in (("makemigrations",), ("migrate", "--no-input"), ("loaddata", *labels)):
        result = project.manage(*args)
        assert result.returncode == 0, result.stdout + result.stderr

    tables = scratch_db.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'app%%'"
    )
    assert len(tables) == shape.tables == 2 * (4 + 1)
    rows = sum(
        scratch_db.query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))[0][0]
        for (name,) in tables
    )
    assert rows == shape.fixture_rows == 2 * (4 * 6 + 6 * 2)
    cross_app = scratch_db.query("SELECT count(*) FROM app01_model00 WHERE upstream_id IS NOT NULL")
    assert cross_app == [(5,)]
