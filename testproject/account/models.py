from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The foundation's members and staff."""

    phone = models.CharField(max_length=32, blank=True)
    member_since = models.DateField(null=True, blank=True)
