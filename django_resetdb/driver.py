"""Whether the PostgreSQL drivers load, without letting an ImportError escape.

The postgres layer composes SQL with psycopg 3 (``psycopg.sql``), so every command needs
it, whatever driver Django itself settled on. Plain ``psycopg`` loads only where libpq
is installed; ``psycopg[binary]`` brings its own.
"""

from __future__ import annotations

import functools

from django_resetdb.output import one_line

INSTALL = 'pip install "django-resetdb-pg[binary]"'


def _import_problem(module: str) -> str:
    try:
        __import__(module)
    except ImportError as exc:
        # psycopg lists what it tried on several lines.
        return one_line(exc)
    return ""


@functools.cache
def psycopg_problem() -> str:
    """Why psycopg 3 cannot be imported, on one line, or "" when it can."""
    return _import_problem("psycopg")


@functools.cache
def psycopg2_loads() -> bool:
    return not _import_problem("psycopg2")


def missing_psycopg_message() -> str:
    """The one-line error of a command run without a working psycopg 3, or ""."""
    problem = psycopg_problem()
    if not problem:
        return ""
    return (
        f"django_resetdb needs psycopg 3, which cannot be imported ({problem}); install it "
        f"with its own libpq: {INSTALL} (or install libpq for plain psycopg)."
    )
