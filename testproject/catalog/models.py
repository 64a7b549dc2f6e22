from __future__ import annotations

from django.contrib.postgres.fields import HStoreField
from django.db import models

from testproject.catalog.fields import CaseInsensitiveCharField


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(unique=True)

    class Meta:
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Artifact(models.Model):
    """An object of the collection, shown on the site and sold as replicas in the shop."""

    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="artifacts")
    # "Salt-glazed jug" and "salt-glazed Jug" are one name: unique per category.
    name = CaseInsensitiveCharField(max_length=200)
    description = models.TextField(blank=True)
    replica_price = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    # Free-form facts (material, period, ...): needs the hstore extension, created by the
    # migration like citext.
    attributes = HStoreField(default=dict, blank=True)
    added = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["category", "name"], name="artifact_unique_name"),
        ]
        indexes = [models.Index(fields=["name"], name="artifact_name_idx")]

    def __str__(self) -> str:
        return str(self.name)
