from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from tests.seedcases.models import ReceiverCall, Review


def record(signal: str, instance: Review, raw: bool, created: bool | None, using: str) -> None:
    ReceiverCall._default_manager.using(using).create(
        signal=signal,
        review=instance.pk,
        raw=raw,
        created=created,
        reviews_in_table=Review._default_manager.using(using).count(),
    )


@receiver(pre_save, sender=Review)
def before(sender: Any, instance: Review, raw: bool, using: str, **kwargs: Any) -> None:
    record("pre_save", instance, raw, None, using)


@receiver(post_save, sender=Review)
def after(
    sender: Any, instance: Review, raw: bool, created: bool, using: str, **kwargs: Any
) -> None:
    record("post_save", instance, raw, created, using)
