"""The whole rebuild: migrations regenerated, schemas reset, migrate, seeds; all or nothing.

In place, each database is rebuilt in one transaction of its own, holding its reset lock;
the transactions commit together at the end, one after the other. A snapshot restore, or
a build in a new database when one transaction would need too many locks, ends with a swap
of names in one transaction instead (see ``snapshots`` and ``newdatabase``). The migration
files are backed up before they change and put back on any failure or Ctrl-C; until the
databases have committed, the backup stays "in progress", so that a run killed in between
is noticed by the next one.

``plan`` works the reset out, ``run`` carries it out, ``report`` says what it did or
would do.
"""

from __future__ import annotations

from django_resetdb.pipeline.plan import ResetPlan, plan_reset
from django_resetdb.pipeline.report import DatabaseResult, ResetResult, dry_run_lines
from django_resetdb.pipeline.run import reset, run_plan
from django_resetdb.signals import post_reset, pre_reset

__all__ = [
    "DatabaseResult",
    "ResetPlan",
    "ResetResult",
    "dry_run_lines",
    "plan_reset",
    "post_reset",
    "pre_reset",
    "reset",
    "run_plan",
]
