"""The benchmark's synthetic projects migrate and load as Django itself would."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from psycopg import sql

from bench.synthetic import Shape, generate
from tests.conftest import (
    PATIENCE,
    REPO,
    ProjectCopy,
    clone_database,
    connect,
    data_snapshot,
    database_url,
    drop_database,
)


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


def test_seed_leaves_what_loaddata_leaves_on_a_synthetic_project(tmp_path, scratch_db):
    shape = Shape(apps=3, models=5, rows=40)
    labels = generate(tmp_path / "synthetic", shape)
    project = ProjectCopy(tmp_path / "synthetic", scratch_db.url(), settings="synth.settings")
    for args in (("makemigrations",), ("migrate", "--no-input")):
        assert project.manage(*args).returncode == 0
    by_loaddata, by_seed = clone_database(scratch_db.name), clone_database(scratch_db.name)
    try:
        loaded = project.manage("loaddata", *labels, url=by_loaddata.url())
        seeded = project.manage("seed", *labels, url=by_seed.url())
        assert loaded.returncode == seeded.returncode == 0, loaded.stderr + seeded.stderr
        once = data_snapshot(by_seed)
        again = project.manage("seed", *labels, url=by_seed.url())
        (tmp_path / "synthetic" / "app01" / "fixtures" / "broken.json").write_text(
            '[{"model": "app01.model00", "pk": 999, "fields": {"name": "x", "number": 1, '
            '"code": "new", "created": "2026-01-01T00:00:00Z"}}, '
            '{"model": "app01.nosuch", "pk": 1, "fields": {}}]'
        )
        broken = project.manage("seed", "broken", url=by_seed.url())

        assert once == data_snapshot(by_loaddata)
        assert sum(len(rows) for name, rows in once.items() if name.startswith("app")) == (
            shape.fixture_rows
        )
        assert again.returncode == 0
        assert data_snapshot(by_seed) == once
        assert broken.returncode == 1
        assert broken.stderr == (
            "CommandError: Seed 'broken': fixture app01/fixtures/broken.json, object 2, names "
            "model 'app01.nosuch', which is not installed; nothing was changed.\n"
        )
        assert data_snapshot(by_seed, sequences=False) == data_snapshot(
            by_loaddata, sequences=False
        )
    finally:
        drop_database(by_loaddata.name)
        drop_database(by_seed.name)


def run_benchmark(module: str, *options: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """``python -m module`` on a small shape, against the test server."""
    return subprocess.run(
        [sys.executable, "-m", module, *options, "--url", database_url("postgres")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The benchmark runs, one at a time: each checks that every database made since it began
# is gone afterwards, which another benchmark's databases would spoil.
@pytest.mark.xdist_group("bench")
def test_seed_benchmark_runs_and_checks_both_leave_the_same_rows():
    shape = ("--apps", "2", "--models", "3", "--rows", "5", "--repeat", "1")
    result = run_benchmark("bench.seed", *shape, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Same rows and sequences after loaddata and seed: yes." in result.stdout
    assert re.search(r"  seed +\d+\.\d\d +\d+ +\d+\.\dx +\d+\n", result.stdout)


def bench_databases() -> set[str]:
    """The databases ``bench.reset`` and ``bench.seed`` make: their own, and snapshots or
    replaced databases of them (named by their comment). Those of the other scenarios
    (``bench_h_``) are their own tests' to check."""
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE (starts_with(datname, 'bench_') OR "
            "shobj_description(oid, 'pg_database') LIKE '%bench_r_%') "
            "AND NOT starts_with(datname, 'bench_h_')"
        ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.xdist_group("bench")
def test_reset_benchmark_runs_and_reports_every_ratio():
    shape = ("--apps", "2", "--models", "3", "--rows", "4", "--repeat", "1", "--memory-check", "2")
    before = bench_databases()  # what a killed run of someone else's left is not this one's
    result = run_benchmark("bench.reset", *shape, timeout=600)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"  hand-written flow +\d+\.\d\d +1\.0x +\d+\n", out), out
    assert re.search(r"  resetdb cold \(after a model change\) +\d+\.\d\d +\d+\.\dx faster", out)
    assert re.search(
        r"  resetdb cold \(a change to the last app\) +\d+\.\d\d +\d+\.\dx faster", out
    )
    assert "migrate     started from the state after " in out  # the last app, from the cache
    assert re.search(r"  resetdb warm \(nothing changed\) +\d+\.\d\d +\d+\.\dx faster", out)
    assert re.search(
        r"  resetdb warm / \(clone \+ start-up\) +\d+\.\d\d +\d+\.\d\dx the floor", out
    )
    assert re.search(r"  seed +\d+\.\d\d +\d+\.\dx loaddata +\d+\n", out)
    # The warm run restored the snapshot the cold run kept.
    assert "    snapshot    restored resetdb_snap_" in out
    assert out.count("Peak memory of a cold resetdb seeding ") == 2
    # Every database it made is gone, snapshots and replaced databases included (the
    # last restore's replaced database is dropped by a process of its own: waited for).
    deadline = time.monotonic() + PATIENCE
    while bench_databases() - before and time.monotonic() < deadline:
        with connect("postgres") as admin:
            admin.execute("SELECT pg_sleep(0.1)")  # a short pause on the server
    assert bench_databases() - before == set()


def own_databases(prefix: str) -> set[str]:
    """Databases named with ``prefix``, and snapshots or replaced databases of them."""
    with connect("postgres") as admin:
        rows = admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) OR "
            "shobj_description(oid, 'pg_database') LIKE %s",
            [prefix, f"%{prefix}%"],
        ).fetchall()
    return {name for (name,) in rows}


def gone_within(before: set[str], prefix: str, seconds: float) -> set[str]:
    """What is left of the databases made since ``before``, waiting up to ``seconds`` for
    the background drop of the database the last restore replaced."""
    deadline = time.monotonic() + seconds
    while own_databases(prefix) - before and time.monotonic() < deadline:
        with connect("postgres") as admin:
            admin.execute("SELECT pg_sleep(0.1)")  # a short pause on the server
    return own_databases(prefix) - before


@pytest.mark.xdist_group("bench")
def test_history_benchmark_runs_and_reports_every_row():
    shape = ("--apps", "2", "--migrations", "5", "--rows", "4", "--repeat", "1")
    before = own_databases("bench_h_")
    result = run_benchmark("bench.history", *shape, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Project: 2 app(s) x 5 hand-written migration(s) (10 files), 16 fixture rows." in out
    assert re.search(r"  migrate \+ loaddata \(baseline\) +\d+\.\d\d +1\.0x +\d+\n", out), out
    assert re.search(r"    of which migrate +\d+\.\d\d +\n", out), out
    assert re.search(r"    of which loaddata +\d+\.\d\d +\n", out), out
    assert re.search(r"  resetdb --keep-migrations, 1 new +\d+\.\d\d +\d+\.\dx faster +\d+\n", out)
    assert re.search(r"  resetdb --keep-migrations, warm +\d+\.\d\d +\d+\.\dx faster +\d+\n", out)
    assert gone_within(before, "bench_h_", PATIENCE) == set()


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_wagtail_benchmark_runs_and_reports_every_row():
    before = own_databases("bench_h_")
    result = run_benchmark("bench.wagtailsite", "--pages", "2", "--repeat", "1", timeout=600)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"Project: wagtail start, 2 page\(s\) added, .* of \d+ objects\.\n", out)
    assert re.search(r"  hand-written flow +\d+\.\d\d +1\.0x +\d+\n", out), out
    for step in ("drop", "makemigrations", "migrate", "loaddata"):
        assert re.search(rf"    of which {step} +\d+\.\d\d +\n", out), out
    assert re.search(r"  resetdb cold \(after a model change\) +\d+\.\d\d +\d+\.\dx faster", out)
    assert re.search(r"  resetdb warm \(nothing changed\) +\d+\.\d\d +\d+\.\dx faster", out)
    assert re.search(r"  loaddata site \(over its rows\) +\d+\.\d\d +1\.0x", out), out
    assert re.search(r"  seed site \(over its rows\) +\d+\.\d\d +\d+\.\dx faster", out)
    assert re.search(r"  objects by path: \d+ copied", out), out
    assert gone_within(before, "bench_h_", PATIENCE) == set()
