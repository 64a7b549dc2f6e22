"""``resetdb`` against the hand-written flow, on the same synthetic project, in one run.

``python -m bench.reset --apps 20 --models 10 --rows 100 --repeat 3`` generates a
synthetic project (see ``bench.synthetic``) twice: one copy for the hand-written flow
(drop the schema, delete the migrations, ``makemigrations``, ``migrate``, ``loaddata``;
``bench.handwritten``, in one process) and one for ``resetdb``, each with a database of
its own. Each repetition then times, as whole processes from start to exit (Django's
start-up included):

* the hand-written flow;
* ``resetdb --no-input`` cold: after a model change (a new field in ``app00``);
* ``resetdb --no-input`` warm: again, nothing changed;
* the bare floor of a restore: ``CREATE DATABASE ... TEMPLATE`` of the snapshot the warm
  run restored (the faster of the server's default strategy and, on PostgreSQL 15+,
  ``FILE_COPY``) plus a Django start-up (``django.setup()``) in the project.

Then ``seed`` against ``loaddata`` as ``bench.seed`` measures them, and with
``--memory-check N`` the peak memory of a cold ``resetdb`` seeding JSON-lines fixtures
with 1 and N times the rows. It prints medians, ratios to the baselines measured in the
same run, and peak memory (the whole process). The server comes from ``DATABASE_URL``
(default ``postgres://postgres@127.0.0.1:5432/postgres``); the databases it creates are
dropped, snapshots included.
``bench.history`` times ``resetdb --keep-migrations`` after one new migration on a long
hand-written migration history against ``migrate`` plus ``loaddata``, and
``bench.wagtailsite`` times ``resetdb`` against the hand-written flow on a ``wagtail
start`` site with pages and an own app; both reuse this module's runner and table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from bench.seed import REPO, Server, measure_seed, parse_options
from bench.synthetic import Shape, generate


@dataclass
class Run:
    seconds: float
    peak_mib: float
    stdout: str


@dataclass
class Site:
    """A project folder with a database of its own, its commands run as whole processes."""

    server: Server
    root: Path
    database: str = field(default_factory=lambda: f"bench_r_{uuid.uuid4().hex[:10]}", kw_only=True)
    settings: str = field(default="synth.settings", kw_only=True)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.server.url_for(self.database),
            "DJANGO_SETTINGS_MODULE": self.settings,
            "PYTHONPATH": os.pathsep.join([str(self.root), str(REPO)]),
        }

    def run(self, *args: str) -> Run:
        """Run ``python ARGS`` in the project; its wall time and peak memory."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, *args], cwd=self.root, env=self.env(), stdout=out, stderr=err
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            out.seek(0)
            err.seek(0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(
                    f"{' '.join(args)} failed:\n{out.read().decode()}{err.read().decode()}"
                )
            return Run(seconds, usage.ru_maxrss / 1024, out.read().decode())

    def drop(self) -> None:
        """Drop the database, its snapshots and the databases restores replaced."""
        with self.server.admin() as conn:
            names = conn.execute(
                "SELECT datname FROM pg_database WHERE datname = %s OR "
                "shobj_description(oid, 'pg_database') LIKE %s OR "
                "shobj_description(oid, 'pg_database') LIKE %s",
                [
                    self.database,
                    f'%"target": "{self.database}"%',
                    f"%the earlier {self.database},%",
                ],
            ).fetchall()
        for (name,) in names:
            self.server.drop(name)


@dataclass
class Copy(Site):
    """A generated synthetic project with a database of its own."""

    shape: Shape
    seeds: str = "json"
    labels: list[str] = field(default_factory=list)
    changes: int = 0

    def __post_init__(self) -> None:
        self.labels = generate(self.root, self.shape)
        if self.seeds == "jsonl":
            lines = [f"{label}_lines" for label in self.labels]
            with (self.root / "synth" / "settings.py").open("a") as settings:
                settings.write(f"\nDJANGO_RESETDB['SEEDS'] = {lines!r}\n")
        self.server.create(self.database)
        self.run("manage.py", "makemigrations", "-v", "0")

    def change_a_model(self, app: str = "app00") -> None:
        """A new field in ``app``'s first model (by default in ``app00``, which every
        other app's foreign keys lead to: all of them are rebuilt)."""
        self.changes += 1
        models = self.root / app / "models.py"
        text = models.read_text()
        marker = "class Model00(models.Model):\n"
        models.write_text(
            text.replace(
                marker, f"{marker}    extra{self.changes} = models.IntegerField(null=True)\n", 1
            )
        )


@contextmanager
def copy(server: Server, folder: Path, shape: Shape, seeds: str = "json") -> Iterator[Copy]:
    made = Copy(server, folder, shape, seeds)
    try:
        yield made
    finally:
        made.drop()


def restored_from(server: Server, database: str) -> str:
    """The snapshot a warm resetdb of ``database`` copies (else the database itself)."""
    with server.admin() as conn:
        row = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'resetdb_snap_') AND "
            "shobj_description(oid, 'pg_database')::jsonb ->> 'target' = %s "
            "ORDER BY shobj_description(oid, 'pg_database')::jsonb ->> 'created' DESC LIMIT 1",
            [database],
        ).fetchone()
    return str(row[0]) if row else database


def clone_seconds(server: Server, template: str) -> float:
    """The faster of the server's default strategy and FILE_COPY, for one bare copy."""
    strategies = [sql.SQL("")]
    with server.admin() as conn:
        if conn.info.server_version >= 150000:
            strategies.append(sql.SQL(" STRATEGY FILE_COPY"))
    seconds = []
    for strategy in strategies:
        name = f"bench_c_{uuid.uuid4().hex[:10]}"
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        with server.admin() as conn:
            started = time.perf_counter()
            conn.execute(statement + strategy)
            seconds.append(time.perf_counter() - started)
        server.drop(name)
    return min(seconds)


def median(values: list[float]) -> float:
    return statistics.median(values)


def header() -> None:
    """The head of the table ``row`` prints the lines of."""
    print(f"  {'what':<38} {'seconds':>8} {'ratio':>22} {'peak MiB':>9}")


def row(label: str, seconds: float, ratio: str, peak: float | None) -> None:
    shown = f"{peak:>9.0f}" if peak is not None else f"{'':>9}"
    print(f"  {label:<38} {seconds:>8.2f} {ratio:>22} {shown}")


def run(options: argparse.Namespace) -> int:
    server = Server(options.url)
    shape = Shape(options.apps, options.models, options.rows)
    print(
        f"Project: {shape.apps} app(s) x {shape.models} model(s) x {shape.rows} row(s): "
        f"{shape.tables} tables, {shape.apps * shape.models * shape.rows} objects, "
        f"{shape.fixture_rows} rows with many-to-many."
    )
    times: dict[str, list[float]] = {
        name: [] for name in ("hand-written", "cold", "cold-leaf", "warm", "clone", "start-up")
    }
    peaks: dict[str, list[float]] = {name: [] for name in times}
    steps: dict[str, list[float]] = {}
    warm_lines: list[str] = []
    leaf_lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="resetdb-bench-") as folder:
        with (
            copy(server, Path(folder) / "hand", shape) as hand,
            copy(server, Path(folder) / "tool", shape) as tool,
        ):
            tool.run("manage.py", "resetdb", "--no-input", "-v", "0")
            for _ in range(options.repeat):
                done = hand.run(
                    "-m", "bench.handwritten", "--apps", *hand.labels, "--fixtures", *hand.labels
                )
                times["hand-written"].append(done.seconds)
                peaks["hand-written"].append(done.peak_mib)
                for step, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    steps.setdefault(step, []).append(seconds)

                # The last app, which no other app points at: the build cache keeps the
                # rest of the project's tables.
                tool.change_a_model(tool.labels[-1])
                done = tool.run("manage.py", "resetdb", "--no-input")
                times["cold-leaf"].append(done.seconds)
                peaks["cold-leaf"].append(done.peak_mib)
                leaf_lines = done.stdout.splitlines()
                tool.change_a_model()
                for name in ("cold", "warm"):
                    done = tool.run("manage.py", "resetdb", "--no-input")
                    times[name].append(done.seconds)
                    peaks[name].append(done.peak_mib)
                    if name == "warm":
                        warm_lines = done.stdout.splitlines()

                times["clone"].append(clone_seconds(server, restored_from(server, tool.database)))
                done = tool.run("-c", "import django; django.setup()")
                times["start-up"].append(done.seconds)
                peaks["start-up"].append(done.peak_mib)
        seeding = measure_seed(server, shape, options.repeat)
        memory: list[tuple[int, Run]] = []
        if options.memory_check:
            for factor in (1, options.memory_check):
                bigger = Shape(shape.apps, shape.models, shape.rows * factor)
                with copy(server, Path(folder) / f"memory{factor}", bigger, "jsonl") as made:
                    made.change_a_model()
                    memory.append(
                        (bigger.fixture_rows, made.run("manage.py", "resetdb", "--no-input"))
                    )

    hand_median = median(times["hand-written"])
    floor = median(times["clone"]) + median(times["start-up"])
    print(f"\nMedian of {options.repeat} run(s), whole processes:")
    header()
    row("hand-written flow", hand_median, "1.0x", max(peaks["hand-written"]))
    for step in ("drop", "makemigrations", "migrate", "loaddata"):
        row(f"  of which {step}", median(steps[step]), "", None)
    cold = median(times["cold"])
    row(
        "resetdb cold (after a model change)",
        cold,
        f"{hand_median / cold:.1f}x faster",
        max(peaks["cold"]),
    )
    leaf = median(times["cold-leaf"])
    row(
        "resetdb cold (a change to the last app)",
        leaf,
        f"{hand_median / leaf:.1f}x faster",
        max(peaks["cold-leaf"]),
    )
    warm = median(times["warm"])
    row(
        "resetdb warm (nothing changed)",
        warm,
        f"{hand_median / warm:.1f}x faster",
        max(peaks["warm"]),
    )
    row("template clone + Django start-up", floor, "", None)
    row("  of which template clone", median(times["clone"]), "", None)
    row("  of which Django start-up", median(times["start-up"]), "", max(peaks["start-up"]))
    row("resetdb warm / (clone + start-up)", warm / floor, f"{warm / floor:.2f}x the floor", None)
    loaddata = median(seeding["loaddata"][0])
    for name, (values, peak) in seeding.items():
        seconds = median(values)
        row(name, seconds, f"{loaddata / seconds:.1f}x loaddata", peak)
    if warm_lines:
        print("\nLast warm run:")
        for line in warm_lines:
            print(f"  {line}")
    if leaf_lines:
        print("\nLast cold run after a change to the last app:")
        for line in leaf_lines:
            print(f"  {line}")
    for rows, done in memory:
        print(
            f"Peak memory of a cold resetdb seeding {rows} rows (JSON lines): "
            f"{done.peak_mib:.0f} MiB ({done.seconds:.2f} s)."
        )
    return 0


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run(parse_options(__doc__ or "", argv)))


if __name__ == "__main__":
    main()
