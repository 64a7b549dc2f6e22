"""Reading fixtures: finding and opening files as ``loaddata`` does, reading objects."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from django.core import serializers
from django.core.management.commands import loaddata
from django.core.serializers import xml_serializer

from django_resetdb.exceptions import ResetError
from django_resetdb.output import one_line

try:
    # Optional: several times faster than json, and the same objects from valid JSON.
    import orjson
except ImportError:  # pragma: no cover - depends on what is installed
    orjson = None  # type: ignore[assignment]


# Every digit as a zero, to look for 19 digits in a row: orjson reads integers past 64
# bits as floats, json as ints (and the longest 64-bit ones have 19 or 20 digits).
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def json_loads(data: bytes | str) -> Any:
    """``json.loads(data)``, by orjson when it is installed and reads ``data`` as json
    does: what orjson refuses and json reads (NaN, Infinity, lone surrogates, nesting
    past 1024 levels) and anything holding a number of 19 digits or more is read by
    json."""
    if (
        orjson is not None
        and isinstance(data, bytes)
        and _LONG_NUMBER not in data.translate(_DIGITS_AS_ZEROS)
    ):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


class FixtureFinder:
    """``loaddata``'s own lookup of fixture labels: app ``fixtures`` folders,
    ``FIXTURE_DIRS``, literal paths, formats, compression and database-specific names."""

    def __init__(self, database: str) -> None:
        finder: Any = loaddata.Command()
        finder.using = database
        finder.app_label = None
        finder.verbosity = 0
        finder.format = None
        finder.serialization_formats = serializers.get_public_serializer_formats()
        self._finder: Any = finder

    @property
    def formats(self) -> list[str]:
        return list(self._finder.serialization_formats)

    @property
    def compressions(self) -> list[str]:
        return [name for name in self._finder.compression_formats if name not in (None, "stdin")]

    def find(self, label: str) -> list[str]:
        """Files for ``label``; raises ``CommandError`` as ``loaddata`` does."""
        if label == loaddata.READ_STDIN:
            raise ResetError("Seeds cannot be read from standard input ('-'); name a file.")
        return [path for path, _folder, _name in self._finder.find_fixtures(label)]

    def open(self, path: str) -> tuple[IO[bytes], str, str | None]:
        """The opened file, its serialization format and its compression."""
        _name, ser_fmt, cmp_fmt = self._finder.parse_name(os.path.basename(path))
        opener, mode = self._finder.compression_formats[cmp_fmt]
        return opener(path, mode), ser_fmt, cmp_fmt


class XmlDeserializer(xml_serializer.Deserializer):
    """Django's XML deserializer, telling the loader before each object is built."""

    def __init__(
        self,
        stream: Any,
        *,
        before: Callable[[Any], None],
        skip: Callable[[Any], bool],
        **options: Any,
    ) -> None:
        super().__init__(stream, **options)
        self._before = before
        self._skip = skip

    def _handle_object(self, node: Any) -> Any:
        self._before(node)
        if self._skip(node.getAttribute("model")):
            return None
        return super()._handle_object(node)  # type: ignore[misc]


def read_dicts(stream: IO[bytes], ser_fmt: str, cmp_fmt: str | None, path: str) -> Iterator[Any]:
    """The objects of a JSON, JSON lines or YAML fixture, as Django's deserializers read
    them; JSON lines one line at a time."""
    if ser_fmt == "jsonl":
        lines: Iterable[bytes] = stream.read().splitlines() if cmp_fmt == "zip" else stream
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json_loads(line)
            except ValueError as exc:
                raise ResetError(f"{path}, line {number}: not valid JSON ({exc}).") from exc
        return
    data = stream.read()
    try:
        if ser_fmt == "yaml":
            import yaml
            from django.core.serializers.pyyaml import (  # type: ignore[attr-defined]
                SafeLoader,
            )

            objects = yaml.load(data, Loader=SafeLoader)
        else:
            objects = json_loads(data)
    except Exception as exc:
        raise ResetError(f"{path}: not valid {ser_fmt.upper()} ({one_line(exc)}).") from exc
    if objects is None:
        return
    if not isinstance(objects, list):
        raise ResetError(f"{path}: expected a list of objects, found {type(objects).__name__}.")
    yield from objects
