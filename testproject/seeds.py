"""Seed callables of the demo project."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.db import router

# Development only: these passwords are listed in the manual (docs/demo.rst).
SAMPLE_USERS = [
    # username, password, is_staff/superuser, first name, last name
    ("admin", "admin", True, "Ada", "Admin"),
    ("alice", "alice", False, "Alice", "Archer"),
    ("bob", "bob", False, "Bob", "Builder"),
    ("carol", "carol", False, "Carol", "Curator"),
]


def create_sample_users(database: str, report: Callable[[str], None] = print) -> int:
    """Create or update the sample users; running it twice changes nothing."""
    model = get_user_model()
    if not router.allow_migrate_model(database, model):
        # Seeds run on every database a reset rebuilds; the users live elsewhere.
        report(f"no sample users on {database!r}: the routers keep users elsewhere")
        return 0
    users = model._default_manager.db_manager(database)
    for username, password, staff, first, last in SAMPLE_USERS:
        user, _ = users.update_or_create(
            username=username,
            defaults={
                "email": f"{username}@example.org",
                "first_name": first,
                "last_name": last,
                "is_staff": staff,
                "is_superuser": staff,
                "is_active": True,
            },
        )
        # Hash only when needed: keeps the row unchanged on a second run.
        if not check_password(password, user.password):
            user.set_password(password)
            user.save(using=database, update_fields=["password"])
    report(f"{len(SAMPLE_USERS)} sample users")
    return len(SAMPLE_USERS)
