"""Receivers that provably do nothing when ``loaddata`` saves an object.

``loaddata`` saves each object with ``raw=True`` and sends ``pre_save`` and ``post_save``
for it. Most receivers of real projects return at once on such a save (Django's
documentation asks them to: the rows a fixture names may not all be there yet), and
many are connected for every model but act on a few (``if not isinstance(instance,
Page): return``). Such a receiver does nothing for those objects, so writing them in
bulk without calling it leaves what ``loaddata`` leaves.

The proof is read from the receiver's own code, statement by statement from the top
(after its docstring), without running it: a statement ``if GUARD: return`` whose guard
is true for a raw save of the model ends the receiver before it did anything; a
statement ``if CONDITION: ...`` (no ``else``) whose condition is false skips its body.
Anything else, or a guard it cannot decide, means the receiver may act: the objects are
saved one by one, as before. A guard is decided only when evaluating it has no effect:
the ``raw`` argument (``raw``, ``kwargs["raw"]``, ``kwargs.get("raw")``, compared with
``True`` or ``False`` or negated), ``isinstance(instance, C)`` for a class ``C`` the
receiver's module names, ``sender is C`` / ``sender is not C``, and ``and`` / ``or`` of
them where the first operand decides.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

# What a guard evaluates to, when it can be told without running anything.
UNKNOWN = None


class _Receiver:
    """The names a receiver's code gives to the arguments of a save signal."""

    def __init__(self, function: Any, model: type[Any]) -> None:
        self.globals = getattr(function, "__globals__", {})
        # Names the function binds itself (arguments, locals): not the module's.
        self.own = set(function.__code__.co_varnames) | set(function.__code__.co_cellvars)
        self.model = model
        parameters = inspect.signature(function).parameters
        self.raw = "raw" if "raw" in parameters else None
        self.instance = "instance" if "instance" in parameters else None
        self.sender = "sender" if "sender" in parameters else None
        self.kwargs = next(
            (p.name for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD),
            None,
        )

    def is_raw(self, node: ast.expr) -> bool:
        """Whether ``node`` reads the ``raw`` argument."""
        if isinstance(node, ast.Name):
            return node.id == self.raw
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == self.kwargs
        ):
            return isinstance(node.slice, ast.Constant) and node.slice.value == "raw"
        return bool(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == self.kwargs
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "raw"
            and all(isinstance(a, ast.Constant) for a in node.args[1:])
            and not node.keywords
        )

    def value(self, node: ast.expr) -> bool | None:
        """The truth of ``node`` on a raw save of the model, or ``UNKNOWN``."""
        if self.is_raw(node):
            return True
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.value(node.operand)
            return UNKNOWN if inner is UNKNOWN else not inner
        if isinstance(node, ast.BoolOp) and node.values:
            # Only the first operand is evaluated when it decides.
            first = self.value(node.values[0])
            if isinstance(node.op, ast.And) and first is False:
                return False
            if isinstance(node.op, ast.Or) and first is True:
                return True
            return UNKNOWN
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return self._compare(node.left, node.ops[0], node.comparators[0])
        if isinstance(node, ast.Call):
            return self._isinstance(node)
        return UNKNOWN

    def _compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> bool | None:
        if self.is_raw(left) and isinstance(right, ast.Constant) and isinstance(right.value, bool):
            if isinstance(op, (ast.Is, ast.Eq)):
                return right.value is True
            if isinstance(op, (ast.IsNot, ast.NotEq)):
                return right.value is False
        if (
            isinstance(left, ast.Name)
            and left.id == self.sender
            and isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq))
        ):
            target = self._class(right)
            if target is None:
                return UNKNOWN
            same = self.model is target
            return same if isinstance(op, (ast.Is, ast.Eq)) else not same
        return UNKNOWN

    def _isinstance(self, node: ast.Call) -> bool | None:
        if not (
            isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and "isinstance" not in self.globals
            and "isinstance" not in self.own
            and len(node.args) == 2
            and not node.keywords
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == self.instance
        ):
            return UNKNOWN
        names = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
        classes = [self._class(name) for name in names]
        if any(c is None for c in classes):
            return UNKNOWN
        return issubclass(self.model, tuple(classes))  # type: ignore[arg-type]

    def _class(self, node: ast.expr) -> type[Any] | None:
        """The class ``node`` names in the receiver's module (a name or a dotted path)."""
        path: list[str] = []
        while isinstance(node, ast.Attribute):
            path.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.globals or node.id in self.own:
            return None
        found: Any = self.globals[node.id]
        for attr in path:
            found = inspect.getattr_static(found, attr, None)
        if not inspect.isclass(found) or _checks_its_own_way(found):
            return None
        return found


def _checks_its_own_way(cls: type[Any]) -> bool:
    """Whether ``isinstance()`` against ``cls`` runs code of its metaclass (an ABC, say):
    then it is not decided here."""
    hooks = {"__instancecheck__", "__subclasscheck__"}
    return any(hooks & set(vars(meta)) for meta in type(cls).__mro__ if meta is not type)


def _returns_only(body: list[ast.stmt]) -> bool:
    return (
        len(body) == 1
        and isinstance(body[0], ast.Return)
        and (body[0].value is None or isinstance(body[0].value, ast.Constant))
    )


@functools.cache
def _tree(function: Any) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(function))
        parsed = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    node = parsed.body[0] if parsed.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def does_nothing(function: Any, model: type[Any]) -> bool:
    """Whether the receiver ``function`` provably does nothing when ``loaddata`` sends it a
    save signal for an object of ``model`` (see the module's doc)."""
    if (
        not inspect.isfunction(function)
        or inspect.iscoroutinefunction(function)
        # A wrapper (functools.wraps) would be read as the function it wraps, and a
        # closure's names are not the module's.
        or hasattr(function, "__wrapped__")
        or function.__code__.co_freevars
    ):
        return False
    tree = _tree(function)
    if tree is not None and tree.name != function.__name__:
        return False
    if tree is None or (tree.decorator_list and not _only_receiver_decorators(tree)):
        return False
    try:
        receiver = _Receiver(function, model)
    except (TypeError, ValueError):
        return False
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    for statement in body:
        if not isinstance(statement, ast.If) or statement.orelse:
            return False
        truth = receiver.value(statement.test)
        if truth is True and _returns_only(statement.body):
            return True
        if truth is not False:
            return False
    return True


def _only_receiver_decorators(tree: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function's decorators are ``@receiver(...)`` only: they connect it and
    return it unchanged."""
    for decorator in tree.decorator_list:
        call = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = call.attr if isinstance(call, ast.Attribute) else getattr(call, "id", "")
        if name != "receiver":
            return False
    return True


def acting(signal: Any, model: type[Any]) -> list[Any]:
    """The receivers of ``signal`` for ``model`` that may act on a raw save (all of them
    but those that provably do nothing, see :func:`does_nothing`)."""
    if not signal.has_listeners(model):
        return []
    found = signal._live_receivers(model)
    if isinstance(found, tuple) and len(found) == 2:
        sync, asynchronous = found
    else:  # an older Django: one list
        sync, asynchronous = list(found), []
    if asynchronous:
        return list(sync) + list(asynchronous)
    return [function for function in sync if not does_nothing(function, model)]
