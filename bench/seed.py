"""``seed`` against ``loaddata`` on the same fixtures, in the same run.

``python -m bench.seed --apps 20 --models 10 --rows 100 --repeat 3`` generates a synthetic
project (see ``bench.synthetic``), migrates a template database once, then for each
repetition loads the fixtures into fresh copies of it with ``loaddata`` and with ``seed``
(JSON, and the same rows as JSON lines), each command in a process of its own timed
without Django's start-up. It checks that both leave the same rows and sequences, then
prints medians, rows per second, the ratio and peak memory. ``--memory-check N`` also
seeds the JSON lines fixtures of a project with N times the rows, to show that peak memory
does not grow with the fixtures' size. The server comes from ``DATABASE_URL`` (default:
``postgres://postgres@127.0.0.1:5432/postgres``); the databases it creates are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench.synthetic import Shape, generate

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# Names of the databases made here start with this, so that runs sharing a server
# can tell theirs apart.
PREFIX = os.environ.get("BENCH_DATABASE_PREFIX", "bench_")


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url_for("postgres"), autocommit=True)

    def create(self, name: str, template: str | None = None) -> None:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(statement)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def snapshot(self, name: str) -> dict[str, Any]:
        """Rows (sorted, as text) and sequence positions of every table in public."""
        result: dict[str, Any] = {}
        with psycopg.connect(self.url_for(name)) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(
                    sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
                ).fetchall()
                result[table] = sorted(row for (row,) in rows)
            sequences = conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            ).fetchall()
            for (sequence,) in sequences:
                result[sequence] = conn.execute(
                    sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(sequence))
                ).fetchone()
        return result


class Project:
    """A generated project with a migrated template database."""

    def __init__(self, server: Server, root: Path, shape: Shape) -> None:
        self.server = server
        self.root = root
        self.shape = shape
        self.labels = generate(root, shape)
        self.template = f"{PREFIX}t_{uuid.uuid4().hex[:10]}"
        self.databases: list[str] = [self.template]
        server.create(self.template)
        self.manage("makemigrations", database=self.template)
        self.manage("migrate", "--no-input", database=self.template)

    def env(self, database: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.server.url_for(database),
            "DJANGO_SETTINGS_MODULE": "synth.settings",
            "PYTHONPATH": os.pathsep.join([str(self.root), str(REPO)]),
        }

    def manage(self, *args: str, database: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args, "-v", "0"],
            cwd=self.root,
            env=self.env(database),
            check=True,
        )

    def fresh(self) -> str:
        name = f"{PREFIX}d_{uuid.uuid4().hex[:10]}"
        self.server.create(name, template=self.template)
        self.databases.append(name)
        return name

    def measure(self, *command: str, database: str) -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-m", "bench.measure", *command],
            cwd=self.root,
            env=self.env(database),
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def paths(self, *labels: str) -> str:
        """What ``seed -v 2`` says of the paths its objects took, into a fresh database
        (not timed)."""
        database = self.fresh()
        try:
            done = subprocess.run(
                [sys.executable, "manage.py", "seed", *labels, "-v", "2"],
                cwd=self.root,
                env=self.env(database),
                check=True,
                capture_output=True,
                text=True,
            )
        finally:
            self.server.drop(database)
            self.databases.remove(database)
        found = [line.strip() for line in done.stdout.splitlines() if "objects by path:" in line]
        return found[-1] if found else "objects by path: not reported"

    def drop_all(self) -> None:
        for name in reversed(self.databases):
            self.server.drop(name)


@contextmanager
def project(server: Server, shape: Shape) -> Iterator[Project]:
    with tempfile.TemporaryDirectory(prefix="resetdb-bench-") as folder:
        made = Project(server, Path(folder) / "synthetic", shape)
        try:
            yield made
        finally:
            made.drop_all()


def measure_seed(
    server: Server, shape: Shape, repeat: int, paths: dict[str, str] | None = None
) -> dict[str, tuple[list[float], float]]:
    """Seconds of each run and peak MiB of ``loaddata``, ``seed`` and ``seed`` on JSON
    lines, into fresh copies of a migrated database; fails unless all leave the same rows.
    ``paths`` gets, per seed command, the paths its objects took (``seed -v 2``)."""
    times: dict[str, list[float]] = {"loaddata": [], "seed": [], "seed (jsonl)": []}
    peaks: dict[str, list[float]] = {name: [] for name in times}
    with project(server, shape) as made:
        lines = [f"{label}_lines" for label in made.labels]
        commands = {
            "loaddata": ("loaddata", *made.labels),
            "seed": ("seed", *made.labels),
            "seed (jsonl)": ("seed", *lines),
        }
        snapshots: dict[str, dict[str, Any]] = {}
        for repetition in range(repeat):
            for name, command in commands.items():
                database = made.fresh()
                measured = made.measure(*command, database=database)
                times[name].append(measured["seconds"])
                peaks[name].append(measured["peak_kib"] / 1024)
                if repetition == 0:
                    snapshots[name] = server.snapshot(database)
                server.drop(database)
                made.databases.remove(database)
        if paths is not None:
            paths["seed"] = made.paths(*made.labels)
            paths["seed (jsonl)"] = made.paths(*lines)
    if not snapshots["seed"] == snapshots["loaddata"] == snapshots["seed (jsonl)"]:
        raise SystemExit("seed and loaddata left different rows or sequences.")
    return {name: (times[name], max(peaks[name])) for name in times}


def run(options: argparse.Namespace) -> int:
    server = Server(options.url)
    shape = Shape(options.apps, options.models, options.rows)
    rows = shape.fixture_rows
    objects = shape.apps * shape.models * shape.rows
    print(
        f"Project: {shape.apps} app(s) x {shape.models} model(s) x {shape.rows} row(s): "
        f"{shape.tables} tables, {objects} objects, {rows} rows with many-to-many."
    )
    paths: dict[str, str] = {}
    measured_seed = measure_seed(server, shape, options.repeat, paths)
    times = {name: values for name, (values, _) in measured_seed.items()}
    peaks = {name: [peak] for name, (_, peak) in measured_seed.items()}
    same = True
    baseline = statistics.median(times["loaddata"])
    print(f"\nMedian of {options.repeat} run(s), each into a fresh copy of the migrated database:")
    print(f"  {'command':<14} {'seconds':>8} {'rows/s':>9} {'vs loaddata':>12} {'peak MiB':>9}")
    for name in times:
        median = statistics.median(times[name])
        print(
            f"  {name:<14} {median:>8.2f} {rows / median:>9.0f} {baseline / median:>11.1f}x "
            f"{max(peaks[name]):>9.0f}"
        )
    print(f"\nSame rows and sequences after loaddata and seed: {'yes' if same else 'NO'}.")
    for name, line in paths.items():
        print(f"{name}: {line}.")
    if options.memory_check:
        bigger = Shape(shape.apps, shape.models, shape.rows * options.memory_check)
        with project(server, bigger) as made:
            database = made.fresh()
            lines = [f"{label}_lines" for label in made.labels]
            measured = made.measure("seed", *lines, database=database)
        print(
            f"Peak memory of seed (jsonl): {max(peaks['seed (jsonl)']):.0f} MiB for {rows} rows, "
            f"{measured['peak_kib'] / 1024:.0f} MiB for {bigger.fixture_rows} rows "
            f"({measured['seconds']:.2f} s)."
        )
    return 0 if same else 1


def parse_options(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options every benchmark takes: the project's shape, repetitions, the memory
    check and the server."""
    parser = argparse.ArgumentParser(description=textwrap.dedent(description).strip())
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-check", type=int, default=0, metavar="N")
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run(parse_options(__doc__ or "", argv)))


if __name__ == "__main__":
    main()
