"""Shapes of large projects built by others: an alias that names the database being reset
(a read replica alias) read by a data migration and by a seed, a composite field without
a column (in test_seed), a migration that cannot run in a transaction."""

from __future__ import annotations

import pytest

from tests.conftest import ProjectCopy, ScratchDatabase

# A second alias naming the same database, the host spelled another way where it can be:
# what an e-commerce project's read replica alias looks like on a developer's machine.
REPLICA = """
DATABASES["replica"] = dict(DATABASES["default"])
if DATABASES["replica"].get("HOST") == "127.0.0.1":
    DATABASES["replica"]["HOST"] = "localhost"
"""

# Data migrations: one writes a row, the next reads it back through the replica alias,
# as a project reads its Site through a replica. Plain migrate commits each migration,
# so the second one finds the row.
WRITES = """
from django.db import migrations


def forwards(apps, schema_editor):
    Venue = apps.get_model("event", "Venue")
    Venue.objects.using(schema_editor.connection.alias).create(name="Main hall")


class Migration(migrations.Migration):
    dependencies = [("event", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
"""
READS_REPLICA = """
from django.db import migrations


def forwards(apps, schema_editor):
    # Raises DoesNotExist when the replica alias reads another database.
    apps.get_model("event", "Venue").objects.using("replica").get(name="Main hall")


class Migration(migrations.Migration):
    dependencies = [("event", "0002_main_hall")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
"""

# A seed that reads through the replica alias what the seeds before it wrote.
SEED = """
def read_through_the_replica(database, report=print):
    from testproject.event.models import Venue

    Venue.objects.using(database).create(name="Seeded hall")
    if not Venue.objects.using("replica").filter(name="Seeded hall").exists():
        raise RuntimeError("the replica alias read another database")
    return 1
"""


def replica_project(project: ProjectCopy, db: ScratchDatabase, settings: str = "") -> None:
    project.url = db.url()
    project.append("testproject/settings.py", REPLICA + settings)
    project.append("testproject/event/migrations/0002_main_hall.py", WRITES)
    project.append("testproject/event/migrations/0003_read_replica.py", READS_REPLICA)
    project.append("testproject/replica_seeds.py", SEED)
    project.append(
        "testproject/settings.py",
        'DJANGO_RESETDB["SEEDS"] = [*DJANGO_RESETDB["SEEDS"], '
        '"testproject.replica_seeds.read_through_the_replica"]\n',
    )


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param("", id="default"),
        # In place: the reset's own transaction holds the tables the replica would read.
        pytest.param('DJANGO_RESETDB["SNAPSHOTS"] = 0\n', id="in-place"),
    ],
)
def test_a_replica_alias_of_the_target_reads_what_the_reset_writes(project, scratch_db, settings):
    replica_project(project, scratch_db, settings)
    # The tables exist: in place, a replica connection of its own would wait on the
    # reset's transaction; in a new database, it would read the one being replaced.
    assert project.manage("migrate", "--no-input").returncode == 0

    for run in (1, 2):
        result = project.manage("resetdb", "--no-input", timeout=180)
        assert result.returncode == 0, f"run {run}: {result.stdout}{result.stderr}"
        assert (
            "database    alias 'replica' names the same database: it uses 'default''s "
            "connection during the reset"
        ) in result.stdout
    # Through a connection of our own: the migrations ran, and the seed's row is there.
    assert scratch_db.query(
        "SELECT name FROM django_migrations WHERE app = 'event' ORDER BY name"
    ) == [("0001_initial",), ("0002_main_hall",), ("0003_read_replica",)]
    assert scratch_db.query("SELECT count(*) FROM event_venue WHERE name = 'Seeded hall'") == [(1,)]


def test_seed_alone_gives_a_replica_alias_its_connection(project, scratch_db):
    replica_project(project, scratch_db)
    assert project.manage("migrate", "--no-input").returncode == 0

    result = project.manage(
        "seed", "testproject.replica_seeds.read_through_the_replica", "-v", "2", timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert scratch_db.query("SELECT count(*) FROM event_venue WHERE name = 'Seeded hall'") == [(1,)]


# A migration that cannot run in a transaction, as large projects add their indexes.
CONCURRENT_INDEX = """
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("event", "0001_initial")]
    operations = [
        AddIndexConcurrently(
            "venue", models.Index(fields=["address"], name="venue_address_idx")
        )
    ]
"""


# The same index as SQL of the migration's own, as most large projects write it.
CONCURRENT_SQL = """
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("event", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "DROP INDEX CONCURRENTLY IF EXISTS venue_address_idx",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS venue_address_idx "
                "ON event_venue (address)",
            ],
            "DROP INDEX CONCURRENTLY IF EXISTS venue_address_idx",
            state_operations=[
                migrations.AddIndex(
                    "venue", models.Index(fields=["address"], name="venue_address_idx")
                )
            ],
        )
    ]
"""


@pytest.mark.parametrize("migration", [CONCURRENT_INDEX, CONCURRENT_SQL], ids=["operation", "sql"])
@pytest.mark.parametrize(
    ("settings", "extra"),
    [
        pytest.param("", [], id="regenerated"),
        pytest.param("", ["--keep-migrations"], id="kept"),
        pytest.param(
            'DJANGO_RESETDB["SNAPSHOTS"] = 0\n', ["--keep-migrations"], id="kept-in-place"
        ),
    ],
)
def test_a_migration_that_cannot_run_in_a_transaction_is_applied(
    project, scratch_db, settings, extra, migration
):
    project.url = scratch_db.url()
    project.append("testproject/settings.py", settings)
    project.edit(
        "testproject/event/models.py",
        "class Venue(models.Model):\n",
        "class Venue(models.Model):\n"
        "    class Meta:\n"
        '        indexes = [models.Index(fields=["address"], name="venue_address_idx")]\n\n',
    )
    project.append("testproject/event/migrations/0002_venue_address_idx.py", migration)
    assert project.manage("migrate", "--no-input").returncode == 0

    for run in (1, 2):
        result = project.manage("resetdb", "--no-input", *extra, timeout=180)
        assert result.returncode == 0, f"run {run}: {result.stdout}{result.stderr}"
        if settings and migration is CONCURRENT_SQL:  # in place: in the reset's transaction
            assert (
                "event.0002_venue_address_idx (atomic = False): its SQL's CONCURRENTLY index "
                "statements run without CONCURRENTLY inside the transaction"
            ) in result.stdout
        assert scratch_db.query(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'venue_address_idx'"
        ) == [("CREATE INDEX venue_address_idx ON public.event_venue USING btree (address)",)]


def test_an_alias_that_is_another_kind_of_session_is_not_given_the_connection(project, scratch_db):
    # Another search_path: it reads other tables than the reset's connection would.
    other = REPLICA + (
        'DATABASES["replica"]["OPTIONS"] = {**DATABASES["replica"].get("OPTIONS", {}), '
        '"options": "-c search_path=public"}\n'
    )
    project.url = scratch_db.url()
    project.append("testproject/settings.py", other)

    result = project.manage("resetdb", "--no-input", timeout=180)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "names the same database" not in result.stdout
