"""Snapshots: a template database kept after a reset, restored by the next reset whose
inputs are the same.

A snapshot is a copy of the whole database, named after a fingerprint of everything that
decides what a reset leaves: migration files, seeds (fixture files, the modules of
callables), the code imported and the installed distributions (see ``dependencies``),
every setting, Django's, PostgreSQL's and this package's versions, and the database
around the reset schemas (the schemas' owners and grants, extensions, other schemas).
What the seeds read while they ran (files, environment variables) is kept with the
snapshot and checked again before it is restored.

A restore copies it into a new database (``CREATE DATABASE ... TEMPLATE``), gives the
copy the target's owner, grants, comment and settings, checks them, then swaps the two
names in one transaction: until the swap the target is untouched, after it the target is
the copy. The replaced database, closed to connections, is dropped at once by a
process of its own (see ``background``); if that fails, by the next run, in the
background while it plans.

A copy of the whole database would also bring back, or lose, what lives outside the reset
schemas; so the cache is only used when nothing is there but extensions.
"""

from __future__ import annotations

from django_resetdb.canonical import ADDRESS
from django_resetdb.snapshots.fingerprints import (
    CONNECTION_KEYS,
    NEUTRAL_KEYS,
    components,
    differences,
    digest,
    environment,
    environment_inputs,
    fingerprint,
    fingerprint_inputs,
    quick_key,
)
from django_resetdb.snapshots.store import (
    NAME_BYTES,
    PREFIX,
    REPLACED_END,
    REPLACED_SUFFIX,
    STATE,
    SWAP,
    Listing,
    NotRestorable,
    Snapshot,
    SnapshotPlan,
    Sweeper,
    connected_to,
    drop,
    drop_all,
    find,
    find_quick,
    half_made,
    keep,
    keep_name,
    keep_state,
    list_all,
    listed,
    maintenance_cursor,
    mark_used,
    plan_snapshot,
    refresh,
    replaced,
    snapshot_name,
    state_name,
    states,
    swap_names,
)
from django_resetdb.snapshots.swap import (
    SWAP_ATTEMPTS,
    blocker_parts,
    ending_line,
    planned_session_lines,
    planned_statements,
    restore,
    split_sessions,
    swap_in,
)

__all__ = [
    "ADDRESS",
    "CONNECTION_KEYS",
    "NAME_BYTES",
    "NEUTRAL_KEYS",
    "PREFIX",
    "REPLACED_END",
    "REPLACED_SUFFIX",
    "STATE",
    "SWAP",
    "SWAP_ATTEMPTS",
    "Listing",
    "NotRestorable",
    "Snapshot",
    "SnapshotPlan",
    "Sweeper",
    "blocker_parts",
    "components",
    "connected_to",
    "differences",
    "digest",
    "drop",
    "drop_all",
    "ending_line",
    "environment",
    "environment_inputs",
    "find",
    "find_quick",
    "fingerprint",
    "fingerprint_inputs",
    "half_made",
    "keep",
    "keep_name",
    "keep_state",
    "list_all",
    "listed",
    "maintenance_cursor",
    "mark_used",
    "plan_snapshot",
    "planned_session_lines",
    "planned_statements",
    "quick_key",
    "refresh",
    "replaced",
    "restore",
    "snapshot_name",
    "split_sessions",
    "state_name",
    "states",
    "swap_in",
    "swap_names",
]
