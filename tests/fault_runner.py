"""``python faults.py ARGS``: ``manage.py ARGS`` with a fault injected at one point of a reset.

Copied into the tests' project copies. ``RESETDB_FAULT=POINT:KIND`` where POINT is one of
``django_resetdb.faults.POINTS`` (``seed:ENTRY`` for the seed of that entry), or
``migrate`` (every migration applied: Django's ``post_migrate``) or ``post_reset`` (a
receiver of the signal), and KIND is ``error`` (an exception), ``interrupt``
(``KeyboardInterrupt``, as Ctrl-C raises it), ``sigint`` (SIGINT sent to the process
itself, as Ctrl-C sends it) or ``pause`` (print ``PAUSED`` and wait, to be killed). The
fault goes in through the documented hook (``django_resetdb.faults.install``) and the
public signals only.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()

from django.core.management import execute_from_command_line  # noqa: E402
from django.db.models.signals import post_migrate  # noqa: E402

from django_resetdb import faults  # noqa: E402
from django_resetdb.signals import post_reset  # noqa: E402

POINT, _, KIND = os.environ["RESETDB_FAULT"].rpartition(":")
NAME, _, SUBJECT = POINT.partition(":")


def fault(*args: Any, **kwargs: Any) -> None:
    if KIND == "pause":
        print("PAUSED", flush=True)
        sys.stdin.read()
        return
    if KIND == "interrupt":
        raise KeyboardInterrupt
    if KIND == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        return
    raise RuntimeError(f"fault injected at {POINT}")


def at_point(point: str, subject: str) -> None:
    if point == NAME and (not SUBJECT or subject == SUBJECT):
        fault()


if NAME == "migrate":
    post_migrate.connect(fault, weak=False)
elif NAME == "post_reset":
    post_reset.connect(fault, weak=False)
elif NAME in faults.POINTS:
    faults.install(at_point)
else:
    raise SystemExit(f"unknown fault point {POINT!r}")

execute_from_command_line(["manage.py", *sys.argv[1:]])
