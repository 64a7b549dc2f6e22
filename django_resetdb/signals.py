"""Signals sent by ``resetdb`` (and ``django_resetdb.reset()``), once per database.

``pre_reset(sender, alias, plan)``
    Before anything changes. Raising stops the reset: nothing has changed.
``post_reset(sender, alias, plan, timings, snapshot)``
    Inside the reset's transaction, once the seeds ran: what a receiver writes is part of
    the all-or-nothing (raising rolls everything back). For work that must happen only
    once the reset is committed, use ``transaction.on_commit(..., using=alias)``. On a
    snapshot restore, sent connected to the copy before the swap, with ``snapshot`` the
    snapshot's name: it holds what receivers wrote when it was made.

``sender`` is ``django_resetdb.pipeline.ResetPlan``; ``plan`` the plan being carried out;
``timings`` the seconds of each step on that database (``schema``, ``migrate``, ``seed``,
and ``migrations`` when the files were regenerated; ``snapshot`` on a restore);
``snapshot`` is None unless a snapshot was restored.
"""

from __future__ import annotations

from django.dispatch import Signal

pre_reset = Signal()
post_reset = Signal()
