"""Reading fixtures: finding and opening files as ``loaddata`` does, reading objects."""

from __future__ import annotations

import contextlib
import difflib
import gc
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from xml.parsers import expat

from django.core import serializers
from django.core.management.base import CommandError
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

    def close_labels(self, label: str) -> list[str]:
        """Labels of existing fixtures that look like ``label``, closest first: what
        ``label`` may have meant when no fixture has it. With the same folder part and
        the same extensions, so that each one is found as it is written."""
        try:
            name, ser_fmt, cmp_fmt = self._finder.parse_name(label)
            basename, folders = self._finder.get_fixture_name_and_dirs(name)
        except (CommandError, ValueError):
            return []
        prefix, suffix = name[: len(name) - len(basename)], label[len(name) :]
        names: set[str] = set()
        for folder in folders:
            try:
                files = [entry.name for entry in os.scandir(folder) if entry.is_file()]
            except OSError:
                continue
            for file in files:
                found = self._fixture_name(file, ser_fmt, cmp_fmt)
                if found is not None:
                    names.add(found)
        close = difflib.get_close_matches(basename, sorted(names), n=3)
        return [f"{prefix}{found}{suffix}" for found in close]

    def _fixture_name(self, file: str, ser_fmt: str | None, cmp_fmt: str | None) -> str | None:
        """The label ``file`` is found by (as ``loaddata`` names its targets), if it is a
        fixture of format ``ser_fmt`` and compression ``cmp_fmt`` (any when None)."""
        parts = file.split(".")
        compression = parts.pop() if len(parts) > 2 and parts[-1] in self.compressions else None
        if len(parts) < 2 or parts[-1] not in self.formats:
            return None
        serialization = parts.pop()
        if ser_fmt not in (None, serialization) or cmp_fmt not in (None, compression):
            return None
        if len(parts) > 1 and parts[-1] == self._finder.using:
            parts.pop()
        return ".".join(parts)


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
        objects = _load_yaml(data, path) if ser_fmt == "yaml" else json_loads(data)
    except ResetError:
        raise
    except Exception as exc:
        raise ResetError(f"{path}: not valid {ser_fmt.upper()} ({one_line(exc)}).") from exc
    if objects is None:
        return
    if not isinstance(objects, list):
        raise ResetError(f"{path}: expected a list of objects, found {type(objects).__name__}.")
    yield from objects


@dataclass(frozen=True)
class ModelLabels:
    """The model labels a fixture's objects name, read without building the objects."""

    # Each label named, and the position of the first object naming it.
    labels: dict[str, int]
    # The first object that names no model, if any: its position, and what it is (a
    # clause: "names no model").
    odd: tuple[int, str] | None = None


# The labels read per file, by the file's identity and version: ``resetdb`` resolves its
# seeds when it plans, and again when it seeds. Only files unchanged for longer than
# SETTLED seconds are kept: a file written twice within the clock's tick would keep its
# size and modification time.
_READ: dict[tuple[str, int, int, int], ModelLabels] = {}
SETTLED = 2.0
_KEPT_AT_MOST = 256


def model_labels(finder: FixtureFinder, path: str, shown: str) -> ModelLabels | None:
    """The model labels fixture ``path`` names, or ``None`` for a file it cannot read
    quickly (a format read by a project's own deserializer, an XML document type). A
    file that does not parse raises :class:`ResetError`, naming it as ``shown`` and
    where it breaks."""
    status = os.stat(path)
    key = (os.path.realpath(path), status.st_ino, status.st_size, status.st_mtime_ns)
    found = _READ.get(key)
    if found is not None:
        return found
    stream, ser_fmt, cmp_fmt = finder.open(path)
    try:
        with _no_collection():
            found = _read_labels(stream, ser_fmt, cmp_fmt, shown)
    finally:
        stream.close()
    if found is not None and time.time() - status.st_mtime > SETTLED:
        if len(_READ) >= _KEPT_AT_MOST:
            _READ.clear()
        _READ[key] = found
    return found


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: parsing makes many containers and no cycles,
    and the collections it would trigger take as long as the parsing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_labels(
    stream: IO[bytes], ser_fmt: str, cmp_fmt: str | None, shown: str
) -> ModelLabels | None:
    if ser_fmt == "xml":
        return _xml_labels(stream, shown)
    if ser_fmt == "jsonl":
        return _labels_of(_json_lines(stream, cmp_fmt, shown))
    if ser_fmt not in ("json", "yaml"):
        return None
    data = stream.read()
    try:
        if ser_fmt == "yaml":
            import yaml
            from django.core.serializers.pyyaml import (  # type: ignore[attr-defined]
                SafeLoader,
            )

            events = yaml.parse(data, Loader=SafeLoader)
            if _may_expand(data):
                events = bounded_yaml(events, f"fixture {shown}")
            try:
                return _yaml_labels(events)
            except _Unusual:
                objects = _load_yaml(data, f"fixture {shown}")
        else:
            objects = json_loads(data)
    except ResetError:
        raise
    except Exception as exc:
        raise ResetError(
            f"fixture {shown} is not valid {ser_fmt.upper()} ({one_line(exc)})"
        ) from exc
    if objects is None:
        return ModelLabels({})
    if not isinstance(objects, list):
        raise ResetError(f"fixture {shown} holds a {type(objects).__name__}, not a list of objects")
    return _labels_of(objects)


def _json_lines(stream: IO[bytes], cmp_fmt: str | None, shown: str) -> Iterator[Any]:
    """The items of a JSON lines fixture, read as :func:`read_dicts` reads them."""
    lines: Iterable[bytes] = stream.read().splitlines() if cmp_fmt == "zip" else stream
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield json_loads(line)
            except ValueError as exc:
                raise ResetError(
                    f"fixture {shown}, line {number}, is not valid JSON ({one_line(exc)})"
                ) from exc


def _labels_of(objects: Iterable[Any]) -> ModelLabels:
    labels: dict[str, int] = {}
    odd: tuple[int, str] | None = None
    for position, item in enumerate(objects, start=1):
        if isinstance(item, dict):
            model = item.get("model")
            if isinstance(model, str):
                if model not in labels:
                    labels[model] = position
            elif odd is None:
                named = f"names model {model!r}, not a label" if "model" in item else ""
                odd = (position, named or "names no model")
        elif odd is None:
            shown = repr(item)
            odd = (
                position,
                f"is not an object: {shown if len(shown) < 40 else shown[:36] + ' ...'}",
            )
    return ModelLabels(labels, odd)


# What a YAML fixture may hold once its aliases are expanded, in nodes (scalars,
# mappings, sequences), and how deep it may nest: a "billion laughs" of a few hundred
# bytes expands to billions, which loading would try to build (gigabytes, for minutes).
YAML_NODES = 5_000_000
YAML_DEPTH = 200


def _load_yaml(data: bytes, shown: str) -> Any:
    """``data`` loaded as Django's YAML deserializer loads it, once ``bounded_yaml`` has
    measured it: nothing is built from a document too large once expanded."""
    import yaml
    from django.core.serializers.pyyaml import SafeLoader  # type: ignore[attr-defined]

    if _may_expand(data):
        for _ in bounded_yaml(yaml.parse(data, Loader=SafeLoader), shown):
            pass
    return yaml.load(data, Loader=SafeLoader)


def _may_expand(data: bytes) -> bool:
    # Without an anchor and an alias nothing expands; nesting alone is cheap to parse.
    return b"&" in data and b"*" in data


def bounded_yaml(events: Iterable[Any], shown: str) -> Iterator[Any]:
    """``events`` of a YAML parser, passed on while the nodes they stand for, with every
    alias expanded, stay within ``YAML_NODES`` and ``YAML_DEPTH``; else :class:`ResetError`
    naming ``shown``. Counts without building anything."""
    import yaml

    sizes: dict[str, int] = {}  # an anchor's node, expanded
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, nodes so far) of each parent
    total = 0
    for event in events:
        kind = type(event)
        size = 0
        if kind is yaml.AliasEvent:
            size = sizes.get(event.anchor, 1)
        elif kind is yaml.ScalarEvent:
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif kind in (yaml.MappingStartEvent, yaml.SequenceStartEvent):
            open_nodes.append((event.anchor, 1))
            if len(open_nodes) > YAML_DEPTH:
                raise ResetError(f"{shown} nests deeper than {YAML_DEPTH} levels")
        elif kind in (yaml.MappingEndEvent, yaml.SequenceEndEvent):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
        if size and open_nodes:
            anchor, inside = open_nodes[-1]
            open_nodes[-1] = (anchor, inside + size)
        if kind is not yaml.MappingStartEvent and kind is not yaml.SequenceStartEvent:
            total += size if not open_nodes else 0
        if (open_nodes and open_nodes[0][1] > YAML_NODES) or total > YAML_NODES:
            raise ResetError(
                f"{shown}: its YAML aliases expand to more than {YAML_NODES:,} nodes (an "
                "alias bomb?); write the values out, or split the file"
            )
        yield event


class _Unusual(Exception):
    """A YAML fixture that the events alone do not tell: read it whole instead."""


# A plain YAML scalar of this shape is a string to YAML's resolver (no number, boolean,
# null, date or merge key looks like it), as a model label is.
_PLAIN_LABEL = re.compile(r"[^\W\d]\w*\.\w+")
_YAML_STR = (None, "!", "tag:yaml.org,2002:str")


def _yaml_labels(events: Iterable[Any]) -> ModelLabels:
    """The labels of a YAML fixture from its parser's events, without building its
    objects (most of what loading YAML costs): each item of the top sequence is a
    mapping whose ``model`` key is read. Anything else (aliases or merge keys at that
    level, tags, several documents) raises :class:`_Unusual`."""
    import yaml

    labels: dict[str, int] = {}
    odd: tuple[int, str] | None = None
    depth = position = documents = 0
    # In an item: whether the next node is a key, whether the last key was "model",
    # and the model it names.
    key_next = model_key = False
    model: str | None = None
    for event in events:
        kind = type(event)
        if kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Unusual
        elif kind is yaml.AliasEvent:
            if depth <= 2:
                raise _Unusual
        elif kind in (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent):
            if depth == 0 and kind is not yaml.SequenceStartEvent:
                raise _Unusual
            if depth == 1:
                if kind is not yaml.MappingStartEvent or event.tag is not None:
                    raise _Unusual
                position, model, key_next = position + 1, None, True
            elif depth == 2 and key_next:
                if kind is not yaml.ScalarEvent or event.tag not in _YAML_STR:
                    raise _Unusual
                if event.value == "<<" and event.implicit[0]:
                    raise _Unusual  # a merge key
                model_key = event.value == "model"
            elif depth == 2 and model_key:
                if kind is not yaml.ScalarEvent or event.tag not in _YAML_STR:
                    raise _Unusual
                if event.implicit[0] and not _PLAIN_LABEL.fullmatch(event.value):
                    raise _Unusual  # plain: it may be read as something else than a string
                model = event.value
            if kind is not yaml.ScalarEvent:
                depth += 1
            elif depth == 2:
                key_next = not key_next
        elif kind in (yaml.MappingEndEvent, yaml.SequenceEndEvent):
            depth -= 1
            if depth == 1:
                if model is not None:
                    labels.setdefault(model, position)
                elif odd is None:
                    odd = (position, "names no model")
            elif depth == 2:
                key_next = not key_next
    return ModelLabels(labels, odd)


class _DocumentType(Exception):
    pass


def _xml_labels(stream: IO[bytes], shown: str) -> ModelLabels | None:
    """The ``model`` of each ``<object>`` element that Django's XML deserializer reads
    as an object (one not inside another), by expat alone: no node is built. ``None``
    for a document with a document type, which Django's deserializer refuses: the
    loader says so, and no entity is expanded here meanwhile."""
    labels: dict[str, int] = {}
    odd: tuple[int, str] | None = None
    depth = inside = position = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth, inside, position, odd
        depth += 1
        if inside or name != "object":
            return
        inside, position = depth, position + 1
        model = attributes.get("model")
        if model:
            labels.setdefault(model, position)
        elif odd is None:
            odd = (position, "names no model")

    def end(name: str) -> None:
        nonlocal depth, inside
        if depth == inside:
            inside = 0
        depth -= 1

    def doctype(*args: Any) -> None:
        raise _DocumentType

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.ParseFile(stream)
    except _DocumentType:
        return None
    except expat.ExpatError as exc:
        raise ResetError(f"fixture {shown} is not valid XML ({exc})") from exc
    return ModelLabels(labels, odd)
