"""Models covering what ``loaddata`` does: natural keys, forward references, many-to-many,
``auto_now``, proxies, multi-table inheritance, ``order_with_respect_to`` and receivers."""

from __future__ import annotations

from typing import Any

from django.db import models


class AuthorManager(models.Manager["Author"]):
    def get_by_natural_key(self, name: str) -> Author:
        return self.get(name=name)


class Author(models.Model):
    name = models.CharField(max_length=50, unique=True)
    born = models.IntegerField(null=True)

    objects = AuthorManager()

    def natural_key(self) -> tuple[Any, ...]:
        return (self.name,)


class FamousAuthor(Author):
    class Meta:
        proxy = True


class TagManager(models.Manager["Tag"]):
    def get_by_natural_key(self, label: str) -> Tag:
        return self.get(label=label)


class Tag(models.Model):
    label = models.CharField(max_length=30, unique=True)

    objects = TagManager()

    def natural_key(self) -> tuple[Any, ...]:
        return (self.label,)


class PublisherManager(models.Manager["Publisher"]):
    def get_by_natural_key(self, name: str) -> Publisher:
        return self.get(name=name)


class Publisher(models.Model):
    """Added with a later migration, as is Book.publisher: ``migrate`` adds that foreign
    key with an ``ALTER TABLE``, which leaves it checked immediately for the rest of the
    transaction."""

    name = models.CharField(max_length=50, unique=True)

    objects = PublisherManager()

    def natural_key(self) -> tuple[Any, ...]:
        return (self.name,)


class Book(models.Model):
    title = models.CharField(max_length=100)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    editor = models.ForeignKey(Author, null=True, on_delete=models.SET_NULL, related_name="+")
    sequel = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")
    tags = models.ManyToManyField(Tag, blank=True, related_name="books")
    publisher = models.ForeignKey(
        Publisher, null=True, on_delete=models.SET_NULL, related_name="books"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)


class Place(models.Model):
    name = models.CharField(max_length=50)


class Restaurant(Place):
    serves_pizza = models.BooleanField(default=False)


class Recipe(models.Model):
    name = models.CharField(max_length=50)


class Step(models.Model):
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE)
    text = models.CharField(max_length=100)

    class Meta:
        order_with_respect_to = "recipe"


class Review(models.Model):
    """Has pre_save and post_save receivers (see ``receivers.py``)."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    stars = models.IntegerField()


class ReceiverCall(models.Model):
    """What the receivers saw: written by them, compared between loaddata and seed."""

    signal = models.CharField(max_length=20)
    review = models.IntegerField()
    raw = models.BooleanField()
    created = models.BooleanField(null=True)
    reviews_in_table = models.IntegerField()


class Money:
    """What a money field of an e-commerce project looks like to Django: a private field
    with no column and no ``to_python``, made of an amount column and a currency column
    (as django-prices' ``MoneyField`` is)."""

    is_relation = False
    many_to_many = many_to_one = one_to_many = one_to_one = None
    related_model = None
    concrete = False
    column = None
    remote_field = None
    primary_key = False
    hidden = False
    auto_created = False

    def __init__(self, amount: str, currency: str) -> None:
        self.amount_field = amount
        self.currency_field = currency

    def contribute_to_class(self, cls: Any, name: str) -> None:
        self.name = self.attname = name
        self.model = cls
        cls._meta.add_field(self, private=True)
        setattr(cls, name, self)

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is None:
            return self
        return (getattr(instance, self.amount_field), getattr(instance, self.currency_field))

    def __set__(self, instance: Any, value: Any) -> None:
        amount, currency = value
        setattr(instance, self.amount_field, amount)
        setattr(instance, self.currency_field, currency)


class Price(models.Model):
    """A model with a composite money-like field (see ``Money``)."""

    label = models.CharField(max_length=50)
    price_amount = models.DecimalField(max_digits=12, decimal_places=2)
    price_currency = models.CharField(max_length=3)
    price = Money("price_amount", "price_currency")


class Note(models.Model):
    """Has receivers that return at once on a raw save (see ``receivers.py``), as most
    receivers of real projects do."""

    text = models.CharField(max_length=50)
    review = models.ForeignKey(Review, null=True, on_delete=models.SET_NULL)
