from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    """An order in the foundation's shop."""

    class Status(models.TextChoices):
        CART = "cart"
        PAID = "paid"
        SHIPPED = "shipped"

    number = models.CharField(max_length=20, unique=True)
    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CART)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    artifact = models.ForeignKey("catalog.Artifact", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=8, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "artifact"], name="orderline_unique_artifact"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.artifact}"


class Ticket(models.Model):
    event = models.ForeignKey("event.Event", on_delete=models.CASCADE, related_name="tickets")
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tickets"
    )
    price = models.DecimalField(max_digits=8, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "holder"], name="ticket_one_per_holder"),
        ]

    def __str__(self) -> str:
        return f"{self.event} / {self.holder}"
