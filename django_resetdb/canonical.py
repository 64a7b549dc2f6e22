"""A stable stand-in for a Python value: the same in every process for the same value,
for the keys of the snapshot cache and the build cache."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import marshal
import re
from typing import Any

# Where an object's default repr says it lives in memory.
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def canonical(value: Any, depth: int = 0) -> Any:
    """A stable stand-in for a value (a deconstructed field's argument, a setting): what
    repr() would give, but naming functions and classes rather than showing their memory
    address, with a function's code (a setting that is a function defined in the
    settings module is seen by its body), and an object of the default repr by its
    attributes."""
    deeper = depth + 1
    if depth > 8:  # deep enough for settings; a cycle stops here
        return ADDRESS.sub("", repr(value))
    if isinstance(value, (list, tuple)):
        return [canonical(v, deeper) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v, deeper) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): canonical(v, deeper) for k, v in value.items()}
    if inspect.isfunction(value):
        code = hashlib.sha256(marshal.dumps(value.__code__)).hexdigest()[:16]
        return f"{value.__module__}.{value.__qualname__}:{code}"
    if inspect.isclass(value):
        return f"{value.__module__}.{value.__qualname__}"
    if dataclasses.is_dataclass(value):
        # Its repr shows its fields as they are, sets in this process's order.
        kind = type(value)
        return [
            f"{kind.__module__}.{kind.__qualname__}",
            {f.name: canonical(getattr(value, f.name, None), deeper)
             for f in dataclasses.fields(value)},
        ]  # fmt: skip
    shown = repr(value)
    if isinstance(value, (str, bytes, int, float, complex)):
        # A subclass (Django's SafeString) shows its value; its attributes are not it.
        return ADDRESS.sub("", shown)
    if (
        (ADDRESS.search(shown) or "{" in shown)
        and hasattr(value, "__dict__")
        and not inspect.ismodule(value)
    ):
        # The default repr says nothing of what the object holds; one that shows a set
        # or a dict shows it in an order another process may not share.
        kind = type(value)
        named = ADDRESS.sub("", shown) if ADDRESS.search(shown) else kind.__qualname__
        return [f"{kind.__module__}.{named}" if named is kind.__qualname__ else named,
                canonical(vars(value), deeper)]  # fmt: skip
    # An object's default repr shows where it lives in memory, which no other run shares.
    return ADDRESS.sub("", shown)
