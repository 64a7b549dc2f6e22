"""What a broken or conflicting installation looks like: no working psycopg 3, or the
unrelated ``django-resetdb`` distribution installed next to this one."""

from __future__ import annotations

import textwrap

import pytest

from django_resetdb.checks import check_distributions, check_driver, driver_messages

# Nothing connects: the commands stop before any connection, and ``check`` opens none.
URL = "postgres://postgres@127.0.0.1:5432/resetdb_no_connection"

# A project whose apps have no models: Django's own models (auth, contenttypes) load the
# database backend at start-up, and without a driver Django fails there, before any
# command runs.
NO_MODELS = """
INSTALLED_APPS = ["django_resetdb"]
ROOT_URLCONF = __name__
urlpatterns = []
"""

# psycopg 3 asked for its C implementation, which is not installed: it does not import.
NO_PSYCOPG = {"PSYCOPG_IMPL": "c"}
NOT_IMPORTED = "couldn't import requested psycopg 'c' implementation: No module named 'psycopg_c'"


@pytest.mark.parametrize(
    "command",
    [
        ("resetdb", "--no-input"),
        ("resetschema", "--no-input"),
        ("seed",),
        ("resetmigrations", "--no-input"),
    ],
)
def test_commands_without_psycopg_3_say_so_in_one_line(manage, command):
    result = manage(*command, url=URL, extra_settings=NO_MODELS, env=NO_PSYCOPG)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"CommandError: django_resetdb needs psycopg 3, which cannot be imported "
        f"({NOT_IMPORTED}); install it with its own libpq: pip install "
        '"django-resetdb-pg[binary]" (or install libpq for plain psycopg).\n'
    )


def test_check_without_any_driver_is_an_error(manage):
    result = manage("check", url=URL, extra_settings=NO_MODELS, env=NO_PSYCOPG)

    assert result.returncode == 1
    assert result.stderr == (
        "SystemCheckError: System check identified some issues:\n"
        "\n"
        "ERRORS:\n"
        f"?: (django_resetdb.E005) psycopg 3 cannot be imported ({NOT_IMPORTED}), nor can "
        "psycopg2: Django cannot connect to PostgreSQL and django_resetdb's commands cannot "
        "run.\n"
        '\tHINT: pip install "django-resetdb-pg[binary]" (psycopg with its own libpq), or '
        "install libpq.\n"
        "\n"
        "System check identified 1 issue (0 silenced).\n"
    )


def test_a_project_without_postgresql_needs_no_driver(manage, tmp_path):
    # SQLite only: no PostgreSQL driver is needed, so none is asked for.
    sqlite_only = NO_MODELS + textwrap.dedent(
        f"""
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": {str(tmp_path / "only.sqlite3")!r}}}}}
        """
    )

    result = manage("check", url=URL, extra_settings=sqlite_only, env=NO_PSYCOPG)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_a_project_on_psycopg2_only_gets_a_warning():
    messages = driver_messages("No module named 'psycopg'", psycopg2_loads=lambda: True)

    assert [message.id for message in messages] == ["django_resetdb.W004"]
    assert messages[0].msg == (
        "psycopg 3 cannot be imported (No module named 'psycopg'): Django uses psycopg2, and "
        "django_resetdb's commands, which need psycopg 3, refuse to run."
    )
    assert messages[0].hint == (
        'pip install "django-resetdb-pg[binary]"; Django then uses psycopg 3 for every '
        "connection, since it prefers it to psycopg2."
    )


def test_psycopg2_is_not_looked_for_when_psycopg_3_imports():
    def psycopg2_loads() -> bool:
        raise AssertionError("psycopg2 was looked for")

    assert driver_messages("", psycopg2_loads=psycopg2_loads) == []
    assert check_driver() == []


def write_distribution(folder, name, version):
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        textwrap.dedent(f"""\
            Metadata-Version: 2.1
            Name: {name}
            Version: {version}
        """)
    )


def test_the_unrelated_django_resetdb_distribution_is_warned_about(manage, tmp_path):
    # manage puts tmp_path on the subprocess's path, where the distribution is found.
    write_distribution(tmp_path, "django-resetdb", "0.1")

    result = manage("check", url=URL, resetdb_settings={})

    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "System check identified some issues:\n"
        "\n"
        "WARNINGS:\n"
        "?: (django_resetdb.W003) The distribution 'django-resetdb' 0.1 is installed: it is "
        "an unrelated project that ships a django_resetdb package and a resetdb command of "
        "its own, over this one's files.\n"
        "\tHINT: pip uninstall django-resetdb, then pip install --force-reinstall "
        "django-resetdb-pg (the uninstall removes files the two share).\n"
        "\n"
        "System check identified 1 issue (0 silenced).\n"
    )


def test_no_warning_without_the_unrelated_distribution(manage, tmp_path):
    write_distribution(tmp_path, "django-resetdb-extras", "1.0")

    result = manage("check", url=URL, resetdb_settings={})

    assert result.returncode == 0, result.stderr
    assert "W003" not in result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"
    assert check_distributions() == []
