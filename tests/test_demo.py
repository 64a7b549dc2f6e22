"""The demo project's seeds are valid: its fixtures load and its users are hashed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, transaction

from testproject.catalog.models import Artifact
from testproject.event.models import Event
from testproject.sales.models import Ticket
from testproject.seeds import SAMPLE_USERS, create_sample_users

pytestmark = pytest.mark.django_db


def test_sample_users_have_hashed_passwords_and_a_second_run_changes_nothing():
    create_sample_users("default", report=lambda message: None)
    first = list(get_user_model().objects.order_by("username").values())

    create_sample_users("default", report=lambda message: None)

    assert list(get_user_model().objects.order_by("username").values()) == first
    for username, password, staff, _, _ in SAMPLE_USERS:
        user = get_user_model().objects.get(username=username)
        assert user.password.startswith("pbkdf2_sha256$")
        assert user.check_password(password)
        assert user.is_superuser is staff


def test_fixtures_load_in_the_seed_order():
    create_sample_users("default", report=lambda message: None)

    call_command("loaddata", "volunteers", "catalog", "events", "sales", verbosity=0)

    assert Artifact.objects.get(pk=1).attributes == {"material": "stoneware", "glaze": "salt"}
    assert Artifact.objects.get(pk=4).attributes == {}
    # citext: the name matches whatever its case, in lookups and in the unique constraint.
    assert Artifact.objects.get(category=1, name="SALT-GLAZED JUG").pk == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Artifact.objects.create(category_id=1, name="salt-glazed Jug")
    assert list(Event.objects.get(title="Pioneer Day").artifacts.values_list("pk", flat=True)) == [
        1, 2, 5,
    ]  # fmt: skip
    assert Ticket.objects.filter(holder__username="alice").count() == 2
    assert not get_user_model().objects.get(username="dora").has_usable_password()
