from __future__ import annotations

from django.db import models


class Shelf(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Book(models.Model):
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=100)
    edition = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return self.title
