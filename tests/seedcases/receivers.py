from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from tests.seedcases.models import Note, ReceiverCall, Review


def record(signal: str, instance: Any, raw: bool, created: bool | None, using: str) -> None:
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


# Receivers that do nothing on loaddata's raw save, each way real projects write it.


@receiver(pre_save, sender=Note)
def note_before(sender: Any, instance: Note, raw: bool, **kwargs: Any) -> None:
    if raw:
        return
    record("note_pre", instance, raw, None, "default")


@receiver(post_save, sender=Note)
def note_after(sender: Any, instance: Note, **kwargs: Any) -> None:
    """As Wagtail's search and reference index handlers are written."""
    if kwargs.get("raw", False):
        return
    record("note_post", instance, False, None, "default")


@receiver(post_save, sender=Note)
def note_focal_point(instance: Note, **kwargs: Any) -> None:
    if kwargs["raw"] is False and instance.text:
        record("note_focal", instance, False, None, "default")


@receiver(pre_save)
def only_reviews(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Connected for every model, acting on one: a no-op for the others.
    if not isinstance(instance, Review):
        return
    setattr(instance, "_seen", True)  # noqa: B010
