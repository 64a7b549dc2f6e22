"""Fixtures loaded with ``loaddata``'s result, in bulk.

``loaddata`` saves one object at a time: an UPDATE, then an INSERT when the UPDATE found
no row, then a ``.set()`` per many-to-many field. :class:`BulkLoader` keeps that result
but buffers objects per model: rows that do not exist yet are written with ``COPY``, the
others with ``INSERT … ON CONFLICT (pk) DO UPDATE``, which is what the UPDATE-then-INSERT
amounts to in raw mode.

What keeps the result identical:

- Items are converted as Django's deserializer converts them: by Django's deserializer
  itself, or, for models with no natural key and no code that runs on instantiation, by
  the same field conversions into a :class:`Row` of attribute values (creating model
  instances is most of what loading costs).
- Before a natural-key lookup reads the database, the buffered objects it could see are
  written first.
- An object whose primary key is already buffered flushes the buffer first, so the later
  object wins, as it does with ``loaddata``.
- Many-to-many rows are worked out as ``.set()`` does (the same set arithmetic, so the
  same rows are inserted in the same order and get the same ids).
- Models whose save has observers or side effects (``pre_save``/``post_save`` or
  ``m2m_changed`` receivers, ``order_with_respect_to``, symmetrical or custom-through
  many-to-many, composite keys) are saved by Django itself, one object at a time, after
  a flush: receivers are called with ``raw=True`` exactly as under ``loaddata``.
"""

from __future__ import annotations

from django_resetdb.fixtureload.loaders import (
    BULK_PATHS,
    BulkLoader,
    DjangoLoader,
    Loader,
)
from django_resetdb.fixtureload.reading import FixtureFinder, ModelLabels, model_labels, read_dicts
from django_resetdb.fixtureload.rows import Where
from django_resetdb.fixtureload.writing import BULK_INSERTED, COPIED

__all__ = [
    "BULK_INSERTED",
    "BULK_PATHS",
    "COPIED",
    "BulkLoader",
    "DjangoLoader",
    "FixtureFinder",
    "Loader",
    "ModelLabels",
    "Where",
    "model_labels",
    "read_dicts",
]
