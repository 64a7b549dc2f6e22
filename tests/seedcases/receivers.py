from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from tests.seedcases.models import ReceiverCall, Review


@receiver(pre_save, sender=Review)
def before(sender: Any, instance: Review, raw: bool, using: str, **kwargs: Any) -> None:
    ReceiverCall._default_manager.using(using).create(
        signal="pre_save",
        review=instance.pk,
        raw=raw,
        created=None,
        reviews_in_table=Review._default_manager.using(using).count(),
    )


@receiver(post_save, sender=Review)
def after(
    sender: Any, instance: Review, raw: bool, created: bool, using: str, **kwargs: Any
) -> None:
    ReceiverCall._default_manager.using(using).create(
        signal="post_save",
        review=instance.pk,
        raw=raw,
        created=created,
        reviews_in_table=Review._default_manager.using(using).count(),
    )
