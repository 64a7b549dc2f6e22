# The fixture db comes from test_guard: its name is an argument here.
# ruff: noqa: F811
"""Settings and arguments of any shape are read the same way at run time, whatever the
system checks said (``call_command``, ``--skip-checks`` and the Python API run none): a
shape the gates could misread refuses with exit status 3 and one sentence, nothing
dropped, and what the gates read is read afresh on every call."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import relations, target_host
from tests.test_guard import assert_untouched, db  # noqa: F401 (fixture: db)

# Runs each case in one process, as a user's script or test would; prints what it got.
SCRIPT = """
import json, types, django
django.setup()
from django.conf import settings
from django.core.management import call_command
import django_resetdb

def run(channel):
    try:
        if channel == "call_command":
            call_command("resetschema", "--no-input", verbosity=0)
        elif channel == "call_command resetdb":
            call_command("resetdb", "--no-input", "--keep-migrations", "--no-seed", verbosity=0)
        else:
            django_resetdb.reset(keep_migrations=True, seed=False, snapshot=False)
        return "reset"
    except Exception as exc:
        return [type(exc).__name__, getattr(exc, "returncode", None), str(exc)]

{body}
"""


def run_script(manage, tmp_path, db, body: str, resetdb_settings=None):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(body=textwrap.dedent(body)))
    result = manage.python(str(script), db=db, resetdb_settings=resetdb_settings or {})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "key", ["HOSTS", "SCHEMAS", "SEEDS", "APPS", "EXCLUDE_APPS", "IGNORED_SETTINGS"]
)
@pytest.mark.parametrize("channel", ["call_command", "call_command resetdb", "reset"])
def test_a_string_where_a_list_is_needed_refuses_from_python(db, manage, tmp_path, key, channel):
    before = relations(db)
    # A string of patterns holds "*": read a letter at a time, it allowed any host.
    value = "*.dev.internal" if key == "HOSTS" else "public"

    got = run_script(
        manage, tmp_path, db,
        f"settings.DJANGO_RESETDB[{key!r}] = {value!r}\nprint(json.dumps(run({channel!r})))",
        resetdb_settings={"ENABLED": True},
    )  # fmt: skip

    kind = "Refused" if channel == "reset" else "CommandError"
    assert got == [
        kind, 3,
        f"DJANGO_RESETDB[{key!r}] must be a list, not the string {value!r}; nothing was done. "
        f"Write [{value!r}].",
    ]  # fmt: skip
    assert_untouched(db, before)


@pytest.mark.parametrize("command", ["resetschema", "resetdb"])
def test_a_string_where_a_list_is_needed_refuses_with_skip_checks(db, manage, command):
    before = relations(db)

    result = manage(
        command, "--no-input", "--skip-checks", db=db,
        extra_settings='DJANGO_RESETDB["HOSTS"] = "*.dev.internal"\n',
    )  # fmt: skip

    assert result.returncode == 3
    assert result.stderr == (
        "CommandError: DJANGO_RESETDB['HOSTS'] must be a list, not the string "
        "'*.dev.internal'; nothing was done. Write ['*.dev.internal'].\n"
    )
    assert_untouched(db, before)


@pytest.mark.parametrize("hosts", ["None", "[None]", "[b'*']", "{'*': True}"])
def test_hosts_that_are_not_strings_refuse_with_skip_checks(db, manage, hosts):
    before = relations(db)

    result = manage(
        "resetdb", "--no-input", "--skip-checks", db=db,
        extra_settings=f'DJANGO_RESETDB["HOSTS"] = {hosts}\n',
    )  # fmt: skip

    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(
        "CommandError: DJANGO_RESETDB['HOSTS'] must be a list of host names, socket folders "
        "or patterns (strings), not "
    ), result.stderr
    assert_untouched(db, before)


@pytest.mark.parametrize("channel", ["call_command", "reset"])
def test_a_mapping_that_is_not_a_dict_is_read_as_one(db, manage, tmp_path, channel):
    before = relations(db)

    got = run_script(
        manage, tmp_path, db,
        "settings.DJANGO_RESETDB = types.MappingProxyType({'ENABLED': False})\n"
        f"print(json.dumps(run({channel!r})))",
    )  # fmt: skip

    command = "resetschema" if channel == "call_command" else "resetdb"
    assert got[:2] == ["CommandError" if channel == "call_command" else "Refused", 3]
    assert got[2].startswith(f"{command} refused: DJANGO_RESETDB['ENABLED'] is False")
    assert_untouched(db, before)


@pytest.mark.parametrize("channel", ["call_command", "reset"])
def test_hosts_narrowed_after_start_up_are_read_by_the_next_call(db, manage, tmp_path, channel):
    before = relations(db)

    got = run_script(
        manage, tmp_path, db,
        f"""
        from django_resetdb.conf import get_settings
        assert "*" in get_settings().hosts  # read once while any host was allowed
        settings.DJANGO_RESETDB["HOSTS"] = ["db.dev.internal"]  # in place: no signal
        print(json.dumps(run({channel!r})))
        """,
        resetdb_settings={"ENABLED": True, "HOSTS": ["*"]},
    )  # fmt: skip

    command = "resetschema" if channel == "call_command" else "resetdb"
    assert got[:2] == ["CommandError" if channel == "call_command" else "Refused", 3]
    assert got[2] == (
        f"{command} refused: host {target_host()!r} of database alias 'default' is not in "
        "DJANGO_RESETDB['HOSTS']; add it there to allow resets on that server."
    )
    assert_untouched(db, before)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        ('call_command("resetdb", "--no-input", database="default")', "The databases"),
        ('django_resetdb.reset(databases="default")', "The databases"),
        ('call_command("resetschema", "--no-input", schemas="public")', "The schemas"),
        ("from django_resetdb.schemas import reset_schemas\nreset_schemas('default', 'public')",
         "The schemas"),
        ('django_resetdb.reset_migrations("account")', "The app labels"),
        ('django_resetdb.seed("catalog")', "The seed labels"),
    ],
)  # fmt: skip
def test_an_argument_that_takes_a_list_refuses_a_string(db, manage, tmp_path, call, what):
    before = relations(db)
    value = (
        "account"
        if "reset_migrations" in call
        else "catalog"
        if "seed(" in call
        else ("public" if "schemas" in call else "default")
    )

    got = run_script(
        manage, tmp_path, db,
        f"""
        try:
            {textwrap.indent(call, " " * 12).strip()}
            print(json.dumps("done"))
        except Exception as exc:
            print(json.dumps([getattr(exc, "returncode", None), str(exc)]))
        """,
        resetdb_settings={"ENABLED": True},
    )  # fmt: skip

    assert got == [
        3,
        f"{what} must be a list, not the string {value!r}; nothing was done. Pass [{value!r}].",
    ]
    assert_untouched(db, before)
