"""Every example of README.rst and docs/*.rst, checked against the code, so none can rot.

The blocks are read as they render: README.rst by docutils (as PyPI renders it), the
manual by Sphinx. Each block is checked by its kind:

* Python: compiled, then run. Settings blocks run in a settings module that ``django-admin
  startproject`` made, with and without a ``DJANGO_RESETDB`` of its own, and what they
  leave goes through the app's system checks; seed callables and signal receivers run
  against the test database; any other block has each call of this package bound to the
  real signature, and each attribute looked up on the real class.
* Shell (``sh``, ``console``, ``::``): every ``manage.py`` or ``django-admin`` line is
  parsed by that command's own parser, ``pip install`` must name this distribution and
  its extras, ``python -m bench.…`` lines are parsed by the benchmark's parser, paths
  given to pytest must exist. Any other program fails, unless listed below as known.
* Output (``text``, and the lines of a ``console`` block without ``$``): each
  ``CommandError:`` line must be one the code can print.
* SQL: not run; the setting it names must be the marker the guard reads.

A block that cannot be checked says why in a comment right before it (``.. not-run:
reason``); a block of any other kind fails. The manual's objects are checked too: every
``.. option::`` exists in its command's parser (and every option of the commands is
described), every ``.. py:…`` object exists with the parameters shown, and the messages
of troubleshooting.rst are those the code raises, every one of them listed.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError

import django_resetdb

# docutils ships no type hints; Sphinx, which reads the manual, depends on it.
nodes: Any = importlib.import_module("docutils.nodes")

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
# The package as imported: an installed wheel's, when the tests run against one.
PACKAGE = Path(django_resetdb.__file__).resolve().parent
DISTRIBUTION = "django-resetdb-pg"

# Aliases the examples name that the demo's settings do not define.
EXAMPLE_ALIASES = ("legacy", "archive")

# Programs the shell examples may run that have nothing of this project's to check.
KNOWN_TOOLS = {
    ".",
    "cd",
    "echo",
    "mkdir",
    "mypy",
    "rm",
    "ruff",
    "source",
    "sphinx-build",
    "tar",
    "twine",
}

# Without the manual (a copy of the tests made without docs/), there is nothing to check.
pytestmark = pytest.mark.skipif(
    not (DOCS / "conf.py").is_file(), reason="docs/ is not here (an sdist without the manual)"
)

NOT_RUN = re.compile(r"^not-run:\s*(?P<reason>\S.*)$", re.S)
WILDCARD = "\x00"


# -- reading the blocks -------------------------------------------------------------------


@dataclass
class Block:
    path: Path
    line: int
    language: str | None
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _marker(node: Any) -> str | None:
    """The reason given by a ``.. not-run: reason`` comment right before ``node``."""
    parent = node.parent
    if parent is None:
        return None
    index = parent.index(node)
    if index == 0:
        return None
    before = parent[index - 1]
    if isinstance(before, nodes.comment):
        found = NOT_RUN.match(before.astext().strip())
        if found:
            return found["reason"]
    return None


def _blocks_of(tree: Any, path: Path, language: Callable[[Any], str | None]) -> list[Block]:
    found = []
    for node in tree.findall(nodes.literal_block):
        source = Path(node.source).resolve() if node.source else path
        if source != path:
            continue  # included from elsewhere (the changelog)
        found.append(Block(path, node.line or 0, language(node), node.astext(), _marker(node)))
    return found


def _docutils_language(node: Any) -> str | None:
    classes = node.get("classes", [])
    if "code" in classes:
        rest = [c for c in classes if c != "code"]
        return rest[0] if rest else None
    return None


@dataclass
class Manual:
    blocks: list[Block]
    doctrees: dict[str, Any]
    options: set[tuple[str, str]]
    python_objects: dict[str, str]
    warnings: str


@pytest.fixture(scope="module")
def readme() -> list[Block]:
    publish_doctree = importlib.import_module("docutils.core").publish_doctree
    path = REPO / "README.rst"
    tree = publish_doctree(
        path.read_text(encoding="utf-8"),
        source_path=str(path),
        settings_overrides={"report_level": 5, "halt_level": 5, "syntax_highlight": "none"},
    )
    return _blocks_of(tree, path, _docutils_language)


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Manual:
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    out = tmp_path_factory.mktemp("docs")
    warnings = io.StringIO()
    with patch_docutils(DOCS), docutils_namespace():
        app = Sphinx(
            str(DOCS),
            str(DOCS),
            str(out / "dummy"),
            str(out / "doctrees"),
            "dummy",
            status=None,
            warning=warnings,
            freshenv=True,
        )
        app.build()
        doctrees = {name: app.env.get_doctree(name) for name in sorted(app.env.found_docs)}
        options = set(app.env.get_domain("std").progoptions)  # type: ignore[attr-defined]
        python_objects = {
            name: entry.objtype
            for name, entry in app.env.get_domain("py").objects.items()  # type: ignore[attr-defined]
        }
    blocks = []
    for name, tree in doctrees.items():
        path = (DOCS / f"{name}.rst").resolve()
        blocks += _blocks_of(tree, path, lambda node: node.get("language"))
    return Manual(blocks, doctrees, options, python_objects, warnings.getvalue())


def _kind(block: Block) -> str:
    if block.not_run is not None:
        return "not-run"
    language = block.language
    if language in (None, "none", "default"):
        # A "::" block: a transcript when it has a prompt, else commands.
        lines = block.text.splitlines()
        language = "console" if any(line.startswith("$ ") for line in lines) else "sh"
    return {
        "python": "python",
        "python3": "python",
        "py": "python",
        "console": "console",
        "sh": "shell",
        "bash": "shell",
        "shell": "shell",
        "text": "output",
        "sql": "sql",
    }.get(language, f"unknown language {language!r}")


# -- what the code says -------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = ("django_resetdb", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved(expr: ast.expr, module: str) -> str | None:
    """The value of a name or attribute a message inlines, when it is a constant string
    of the module (``SETTING_NAME``, ``postgres.PROTECTED_SETTING``)."""
    chain: list[str] = []
    while isinstance(expr, ast.Attribute):
        chain.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    try:
        value: Any = importlib.import_module(module)
        for name in [expr.id, *chain]:
            value = getattr(value, name)
    except (ImportError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _skeleton(node: ast.expr, module: str) -> str | None:
    """A string constant or f-string as text, each value it formats a wildcard."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif not isinstance(node, ast.JoinedStr):
        return None
    else:
        text = _formatted(node, module)
    # "..." stands for what was left out, in the code's messages as in the manual's.
    text = text.replace("...", WILDCARD).replace("…", WILDCARD)
    return re.sub(f"{WILDCARD}+", WILDCARD, text).strip()


def _formatted(node: ast.JoinedStr, module: str) -> str:
    text = ""
    for part in node.values:
        if isinstance(part, ast.Constant):
            text += str(part.value)
            continue
        assert isinstance(part, ast.FormattedValue)
        inlined = None
        if part.conversion == -1 and part.format_spec is None:
            inlined = _resolved(part.value, module)
        text += inlined if inlined is not None else WILDCARD
    return text


@dataclass(frozen=True)
class Template:
    text: str
    where: str
    raised: bool

    @property
    def literal(self) -> int:
        return len(self.text.replace(WILDCARD, ""))

    def longest_run(self) -> str:
        return max(self.text.split(WILDCARD), key=len)


RAISED = {"ResetError", "Refused", "CommandError"}


@pytest.fixture(scope="module")
def templates() -> list[Template]:
    """Every string the package can print, and which of them it raises as an error."""
    found: list[Template] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        raised: set[int] = set()
        # The pieces of an f-string are not messages of their own.
        pieces = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
                and node.exc.func.id in RAISED
                and node.exc.args
            ):
                raised.add(id(node.exc.args[0]))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Constant, ast.JoinedStr)) and id(node) not in pieces:
                text = _skeleton(node, module)
                if text:
                    where = f"{_module_name(path)}:{node.lineno}"
                    found.append(Template(text, where, id(node) in raised))
    return found


def _intersects(first: str, second: str) -> bool:
    """Whether some text matches both patterns (``WILDCARD`` stands for any text)."""
    end = (len(first), len(second))
    seen = {(0, 0)}
    queue = deque([(0, 0)])
    while queue:
        i, j = queue.popleft()
        if (i, j) == end:
            return True
        steps = []
        if i < len(first) and first[i] == WILDCARD:
            steps.append((i + 1, j))
            if j < len(second):
                steps.append((i, j + 1))
        if j < len(second) and second[j] == WILDCARD:
            steps.append((i, j + 1))
            if i < len(first):
                steps.append((i + 1, j))
        if i < len(first) and j < len(second) and first[i] == second[j] != WILDCARD:
            steps.append((i + 1, j + 1))
        for step in steps:
            if step not in seen:
                seen.add(step)
                queue.append(step)
    return False


def _pattern(documented: str) -> str:
    """A message as the manual writes it, ``…`` (or ``...``) standing for any text."""
    text = documented.replace("...", "…").replace("…", WILDCARD)
    return re.sub(f"{WILDCARD}+", WILDCARD, text)


def _printed_by_code(message: str, templates: list[Template]) -> bool:
    """Whether the code can print ``message``: it begins with a string of the package
    (one with 8 or more characters of its own), the rest being what that string was
    composed with (the ``; the migration files were put back …`` of an outer message)."""
    pattern = _pattern(message)
    for template in templates:
        if template.literal < 8 or template.longest_run() not in pattern:
            continue
        # An outer message drops the inner one's full stop before adding its own part.
        if _intersects(pattern, f"{template.text.rstrip('.')}{WILDCARD}"):
            return True
    return False


# -- shell lines --------------------------------------------------------------------------


def _commands(line: str) -> Iterator[list[str]]:
    """The simple commands of a shell line, each as its words."""
    line = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
    lexer.whitespace_split = True
    current: list[str] = []
    for token in lexer:
        if token and set(token) <= set("|&;"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _parser_of(name: str) -> argparse.ArgumentParser:
    commands = get_commands()
    assert name in commands, f"no manage.py command {name!r}"
    command = load_command_class(commands[name], name)
    parser = command.create_parser("manage.py", name)
    for action in parser._actions:
        if action.dest in ("database", "databases") and action.choices is not None:
            action.choices = (*action.choices, *EXAMPLE_ALIASES)
    return parser


def check_manage(words: list[str]) -> None:
    assert words, "manage.py without a command"
    name, *arguments = words
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # what --help prints
            _parser_of(name).parse_args(arguments)
    except SystemExit as exc:
        if exc.code != 0:  # --help ends with 0
            raise AssertionError(f"manage.py {' '.join(words)}: exit {exc.code}") from exc
    except CommandError as exc:
        raise AssertionError(f"manage.py {' '.join(words)}: {exc}") from exc


def _pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    parsed: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return parsed


def _extras() -> set[str]:
    return set(_pyproject()["project"]["optional-dependencies"])


def check_pip(words: list[str]) -> None:
    if words[0] == "uninstall":
        # Only the unrelated distribution is ever uninstalled (the W003 repair).
        assert words[1:] == ["django-resetdb"], words
        return
    assert words[0] == "install", words
    wanted = [word for word in words[1:] if not word.startswith("-")]
    assert wanted, words
    for requirement in wanted:
        found = re.fullmatch(r"(?P<name>[^\[\]]+?)(\[(?P<extras>[^\]]*)\])?", requirement)
        assert found, requirement
        extras = {e.strip() for e in (found["extras"] or "").split(",") if e.strip()}
        assert extras <= _extras(), f"{requirement}: no such extra in pyproject.toml"
        name = found["name"]
        if name.startswith("django-reset") or name.startswith("django_reset"):
            assert name == DISTRIBUTION, f"{requirement}: the distribution is {DISTRIBUTION}"
        else:
            # A local path: the checkout, or the wheel built from it.
            assert (
                name in (".", "-e")
                or name.startswith("$")
                or name.endswith(".whl")
                or name == "SUBSTITUTED"
            ), f"{requirement}: not this distribution"


class _Parsed(Exception):
    pass


def check_bench(module: str, arguments: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse the arguments with the benchmark's own parser, and stop before it runs."""
    original = argparse.ArgumentParser.parse_args

    def parse(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        original(self, args, namespace)
        raise _Parsed

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse)
        main = importlib.import_module(module).main
        try:
            main(arguments)
        except _Parsed:
            return
        except SystemExit as exc:
            raise AssertionError(f"python -m {module} {' '.join(arguments)}: exit {exc}") from exc
    raise AssertionError(f"python -m {module} parsed no arguments")


def check_pytest(words: list[str]) -> None:
    markers = _markers()
    arguments = iter(words)
    for word in arguments:
        if word == "-m":
            expression = next(arguments)
            named = set(re.findall(r"[A-Za-z_]+", expression)) - {"not", "and", "or"}
            assert named <= markers, f"pytest -m {expression!r}: unknown marker"
        elif word in ("-n", "-p", "-k"):
            next(arguments)
        elif not word.startswith("-"):
            path = REPO / word.split("::")[0]
            assert path.exists(), f"pytest {word}: no such file"


def _markers() -> set[str]:
    declared = _pyproject()["tool"]["pytest"]["ini_options"]["markers"]
    return {entry.split(":")[0].strip() for entry in declared}


def check_shell_line(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for words in _commands(line):
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words:
            continue  # an assignment
        program = words[0].rsplit("/", 1)[-1] if "/" in words[0] else words[0]
        arguments = words[1:]
        if program.startswith("python"):
            assert arguments, line
            if arguments[0].endswith("manage.py"):
                check_manage(arguments[1:])
            elif arguments[0] == "-m" and arguments[1] == "pip":
                check_pip(arguments[2:])
            elif arguments[0] == "-m" and arguments[1].startswith("bench."):
                check_bench(arguments[1], arguments[2:], monkeypatch)
            elif arguments[0] == "-m" and arguments[1] == "django":
                check_manage(arguments[2:])
            elif arguments[0] == "-m" and arguments[1] in ("build", "venv"):
                pass
            elif arguments[0] == "-m" and arguments[1] == "pytest":
                check_pytest(arguments[2:])
            else:
                raise AssertionError(f"unknown python command: {line}")
        elif program == "django-admin":
            check_manage(arguments)
        elif program == "pip":
            check_pip(arguments)
        elif program == "pytest":
            check_pytest(arguments)
        elif program not in KNOWN_TOOLS:
            raise AssertionError(f"unknown program {program!r}: {line}")


# -- Python blocks ------------------------------------------------------------------------


def _is_setting(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    return bool(targets) and all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def _python_kind(tree: ast.Module) -> str:
    if all(_is_setting(node) for node in tree.body):
        return "settings"
    if any(isinstance(node, ast.FunctionDef) for node in tree.body):
        return "callables"
    return "api"


def _module_of(block: Block, default: str) -> str:
    """The module a block says it is, by a first line such as ``# mysite/settings_ci.py``."""
    first = block.text.splitlines()[0]
    found = re.fullmatch(r"#\s*(?P<path>[\w/]+)\.py\b.*", first)
    return found["path"].replace("/", ".") if found else default


def _literal_keys(tree: ast.Module, name: str) -> set[str]:
    keys: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            keys |= {
                k.value
                for k in node.value.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
    return keys


BASE_RESETDB = {"SEEDS": ["catalog"], "LOCK_TIMEOUT": 7}


@pytest.fixture(scope="module")
def startproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project as ``django-admin startproject mysite`` makes it."""
    folder = tmp_path_factory.mktemp("startproject")
    call_command("startproject", "mysite", str(folder))
    settings = folder / "mysite" / "settings.py"
    # As generated: each block's run rewrites settings.py from it.
    (folder / "settings.py.generated").write_text(settings.read_text(encoding="utf-8"))
    return folder


def run_settings_block(
    block: Block,
    tree: ast.Module,
    startproject: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_resetdb import checks, conf

    monkeypatch.syspath_prepend(str(startproject))
    base_file = startproject / "mysite" / "settings.py"
    generated = (startproject / "settings.py.generated").read_text(encoding="utf-8")
    inherits = any(
        isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names)
        for node in tree.body
    )
    for base in (None, BASE_RESETDB):
        text = generated if base is None else f"{generated}\nDJANGO_RESETDB = {base!r}\n"
        base_file.write_text(text, encoding="utf-8")
        for name in [m for m in sys.modules if m == "mysite" or m.startswith("mysite.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        base_module = importlib.import_module("mysite.settings")
        name = _module_of(block, "mysite.settings")
        namespace = {**vars(base_module), "__name__": name, "__package__": "mysite"}
        try:
            exec(compile(block.text, block.where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"{block.where}: fails in a startproject settings module "
                f"{'with' if base else 'without'} DJANGO_RESETDB: {exc!r}"
            ) from exc
        if "INSTALLED_APPS" in _names_assigned(tree):
            for app in namespace["INSTALLED_APPS"]:
                assert importlib.util.find_spec(app.rsplit(".apps.", 1)[0]), app
        for check_id in namespace.get("SILENCED_SYSTEM_CHECKS", []):
            if check_id.startswith("django_resetdb."):
                assert check_id.split(".", 1)[1] in (PACKAGE / "checks.py").read_text(), check_id
        if "DJANGO_RESETDB" not in namespace:
            continue
        value = namespace["DJANGO_RESETDB"]
        if base is not None and inherits:
            kept = set(base) - _literal_keys(tree, "DJANGO_RESETDB")
            lost = {key for key in kept if value.get(key) != base[key]}
            assert not lost, f"{block.where}: drops {sorted(lost)} of the base settings"
        settings.DJANGO_RESETDB = value
        settings.DEBUG = namespace.get("DEBUG", True)
        errors = [m for m in checks.check_settings() if m.is_serious()]
        assert not errors, f"{block.where}: {errors}"
        conf.get_settings()
        if set(value) == set(conf.DEFAULTS):
            assert value == conf.DEFAULTS, f"{block.where}: the defaults are {conf.DEFAULTS}"


def _names_assigned(tree: ast.Module) -> set[str]:
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _signal_arguments(signal: str) -> set[str]:
    """The keyword arguments the package sends ``signal`` with."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "send"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == signal
            ):
                found |= {k.arg for k in node.keywords if k.arg and k.arg != "sender"}
    assert found, f"the package never sends {signal}"
    return found


def run_callables_block(block: Block) -> None:
    """Run the seed callables and signal receivers a block defines, as the package calls
    them, against the test database."""
    from django.contrib.auth import get_user_model
    from django.dispatch import Signal

    from django_resetdb import signals
    from django_resetdb.pipeline import ResetPlan

    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(block.text, block.where, "exec"), namespace)
    # What @receiver(signal) connected, read from the decorators.
    connected: list[tuple[Signal, Callable[..., Any]]] = []
    for node in ast.parse(block.text).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "receiver":
                for argument in decorator.args:
                    signal = eval(ast.unparse(argument), namespace)
                    assert signal in (signals.pre_reset, signals.post_reset), (
                        f"{block.where}: {node.name} receives {ast.unparse(argument)}"
                    )
                    connected.append((signal, namespace[node.name]))
    try:
        functions = [
            value
            for value in namespace.values()
            if inspect.isfunction(value) and value.__module__ == "docs_example"
        ]
        assert functions, f"{block.where}: defines no function"
        for function in functions:
            receiving = [
                signal for signal, connected_function in connected if connected_function is function
            ]
            parameters = list(inspect.signature(function).parameters)
            users = get_user_model().objects
            if receiving:
                for signal in receiving:
                    name = "pre_reset" if signal is signals.pre_reset else "post_reset"
                    values: dict[str, Any] = {
                        "alias": "default",
                        "plan": None,
                        "timings": {},
                        "snapshot": None,
                    }
                    arguments = {key: values.get(key) for key in _signal_arguments(name)}
                    # Twice as after a rebuild, then as after a restore.
                    signal.send(sender=ResetPlan, **arguments)
                    count = users.count()
                    signal.send(sender=ResetPlan, **arguments)
                    assert users.count() == count, f"{block.where}: not idempotent"
                    signal.send(sender=ResetPlan, **{**arguments, "snapshot": "resetdb_snap_x"})
                    assert users.count() == count, f"{block.where}: writes on a restore"
            elif parameters == ["database", "report"]:
                reports: list[str] = []
                first = function("default", reports.append)
                rows = users.count()
                second = function("default", reports.append)
                assert first == second and users.count() == rows, f"{block.where}: not idempotent"
                assert first is None or isinstance(first, int), f"{block.where}: returns {first!r}"
            else:
                raise AssertionError(
                    f"{block.where}: {function.__name__} is neither a seed callable nor a "
                    "receiver of this package's signals"
                )
    finally:
        for signal, connected_receiver in connected:
            signal.disconnect(connected_receiver)


def _return_type(function: Any) -> Any:
    """The class ``function`` returns (the element class for a list), from its annotation."""
    try:
        annotation = inspect.signature(function).return_annotation
    except (TypeError, ValueError):
        return None
    if not isinstance(annotation, str):
        return annotation if inspect.isclass(annotation) else None
    found = re.fullmatch(r"(?:list\[)?(?P<name>\w+)\]?(?: \| None)?", annotation)
    return _class_named(found["name"], function) if found else None


def _class_named(name: str, near: Any) -> Any:
    namespaces = [getattr(near, "__globals__", {})]
    namespaces += [vars(m) for n, m in list(sys.modules.items()) if n.startswith("django_resetdb")]
    for namespace in namespaces:
        value = namespace.get(name)
        if inspect.isclass(value):
            return value
    return None


@dataclass
class Instance:
    cls: type


def _attribute(value: Any, name: str, where: str) -> Any:
    if isinstance(value, Instance):
        cls = value.cls
        if dataclasses.is_dataclass(cls):
            for field in dataclasses.fields(cls):
                if field.name == name:
                    named = re.fullmatch(r"(?P<name>\w+)(?: \| None)?", str(field.type))
                    found = _class_named(named["name"], cls) if named else None
                    return Instance(found) if found else None
        assert hasattr(cls, name), f"{where}: {cls.__name__} has no {name!r}"
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            found = _return_type(member.fget)
            return Instance(found) if found else None
        return ("method", getattr(cls, name))
    if inspect.ismodule(value) and value.__name__.startswith("django_resetdb"):
        if not hasattr(value, name):
            importlib.import_module(f"{value.__name__}.{name}")
        assert hasattr(value, name), f"{where}: {value.__name__} has no {name!r}"
    return getattr(value, name, None)


def _ours(value: Any) -> bool:
    if isinstance(value, Instance):
        return True
    if isinstance(value, tuple):
        return True
    module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
    return isinstance(module, str) and module.startswith("django_resetdb")


def _in_order(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and what it holds, in the order of the source."""
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _in_order(child)


def check_api_block(block: Block, tree: ast.Module) -> None:
    """Bind each call of this package to the real signature, and look each attribute up
    on the real class, following what each call returns."""
    namespace: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), block.where, "exec"), namespace)
    known: dict[str, Any] = {}

    def value_of(expr: ast.expr) -> Any:
        if isinstance(expr, ast.Name):
            if expr.id in known:
                return known[expr.id]
            return namespace.get(expr.id, getattr(builtins, expr.id, None))
        if isinstance(expr, ast.Attribute):
            base = value_of(expr.value)
            if base is None or not _ours(base):
                return None
            return _attribute(base, expr.attr, f"{block.where}, line {expr.lineno}")
        if isinstance(expr, ast.Call):
            return call(expr)
        return None

    def call(node: ast.Call) -> Any:
        function = value_of(node.func)
        if function is None or not _ours(function):
            return None
        where = f"{block.where}, line {node.lineno}"
        bound_self = isinstance(function, tuple)
        target = function[1] if bound_self else function
        if not any(isinstance(a, ast.Starred) for a in node.args) and not any(
            k.arg is None for k in node.keywords
        ):
            positional = [None] * (len(node.args) + int(bound_self))
            keywords = {k.arg: None for k in node.keywords if k.arg}
            try:
                inspect.signature(target).bind(*positional, **keywords)
            except TypeError as exc:
                raise AssertionError(f"{where}: {ast.unparse(node)}: {exc}") from exc
        if inspect.isclass(target):
            return Instance(target)
        found = _return_type(target)
        return Instance(found) if found else None

    for node in _in_order(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                known[target.id] = value_of(node.value)
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            known[node.target.id] = value_of(node.iter)
        elif isinstance(node, ast.Call):
            call(node)
        elif isinstance(node, ast.Attribute):
            value_of(node)


# -- the tests ----------------------------------------------------------------------------


def _all_blocks(readme: list[Block], manual: Manual) -> list[Block]:
    return readme + manual.blocks


def test_the_manual_builds_without_warnings(manual: Manual) -> None:
    assert manual.warnings == ""


def test_every_block_is_of_a_known_kind(readme: list[Block], manual: Manual) -> None:
    blocks = _all_blocks(readme, manual)
    assert len(readme) >= 6 and len(manual.blocks) >= 40
    unknown = [f"{b.where}: {_kind(b)}" for b in blocks if _kind(b).startswith("unknown")]
    assert not unknown, "blocks of no known kind (mark them '.. not-run: why'):\n" + "\n".join(
        unknown
    )


def test_python_blocks_compile(readme: list[Block], manual: Manual) -> None:
    for block in _all_blocks(readme, manual):
        if _kind(block) == "python" or (block.not_run and block.language == "python"):
            compile(block.text, block.where, "exec")


def test_settings_blocks_work_in_a_new_project(
    readme: list[Block],
    manual: Manual,
    startproject: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = 0
    for block in _all_blocks(readme, manual):
        if _kind(block) != "python":
            continue
        tree = ast.parse(block.text)
        if _python_kind(tree) == "settings":
            run_settings_block(block, tree, startproject, settings, monkeypatch)
            ran += 1
    assert ran >= 8


@pytest.mark.django_db
def test_seed_callables_and_receivers_run(readme: list[Block], manual: Manual) -> None:
    ran = 0
    for block in _all_blocks(readme, manual):
        if _kind(block) == "python" and _python_kind(ast.parse(block.text)) == "callables":
            run_callables_block(block)
            ran += 1
    assert ran >= 3


def test_api_blocks_call_what_exists(readme: list[Block], manual: Manual) -> None:
    import django_resetdb.pipeline  # noqa: F401  (the classes the calls return)

    ran = 0
    for block in _all_blocks(readme, manual):
        if _kind(block) == "python":
            tree = ast.parse(block.text)
            if _python_kind(tree) == "api":
                check_api_block(block, tree)
                ran += 1
    assert ran >= 5


def test_shell_lines_parse(
    readme: list[Block], manual: Manual, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = 0
    for block in _all_blocks(readme, manual):
        kind = _kind(block)
        if kind == "shell":
            lines = block.text.splitlines()
        elif kind == "console":
            lines = [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
        else:
            continue
        for line in lines:
            try:
                check_shell_line(line, monkeypatch)
            except AssertionError as exc:
                raise AssertionError(f"{block.where}: {exc}") from exc
            checked += 1
    assert checked >= 60


def test_printed_errors_are_the_codes(
    readme: list[Block], manual: Manual, templates: list[Template]
) -> None:
    """Each ``CommandError:`` line of a transcript is one the code can print."""
    wrong = []
    for block in _all_blocks(readme, manual):
        if _kind(block) not in ("console", "output"):
            continue
        for line in block.text.splitlines():
            line = line.strip()
            if line.startswith("CommandError: ") and not _printed_by_code(line[14:], templates):
                wrong.append(f"{block.where}: {line}")
    assert not wrong, "\n".join(wrong)


def test_sql_names_the_marker(readme: list[Block], manual: Manual) -> None:
    from django_resetdb.postgres import PROTECTED_SETTING

    for block in _all_blocks(readme, manual):
        if _kind(block) == "sql":
            for name in re.findall(r"django_resetdb\.\w+", block.text):
                assert name == PROTECTED_SETTING, f"{block.where}: {name}"


def test_described_options_are_the_commands(manual: Manual) -> None:
    base = {
        option
        for action in BaseCommand().create_parser("manage.py", "base")._actions
        for option in action.option_strings
    }
    programs = {program for program, _ in manual.options}
    assert programs == {"resetdb", "resetmigrations", "resetschema", "seed"}
    for program in programs:
        described = {option for name, option in manual.options if name == program}
        real: set[str] = set()
        for action in _parser_of(program)._actions:
            if action.option_strings:
                real |= set(action.option_strings) - base
            elif action.dest != "help":
                real.add(str(action.metavar or action.dest))
        assert described - base <= real, f"{program}: no such option {described - real}"
        assert real <= described, f"{program}: options not described {real - described}"


def _import(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for index, name in enumerate(parts[cut:], start=cut):
            if (
                inspect.isclass(value)
                and dataclasses.is_dataclass(value)
                and name in {field.name for field in dataclasses.fields(value)}
            ):
                assert index == len(parts) - 1, dotted
                return dataclasses.MISSING
            assert hasattr(value, name), f"{dotted}: no {name!r}"
            value = getattr(value, name)
        return value
    raise AssertionError(f"{dotted}: cannot be imported")


def _documented_parameters(signature: Any) -> list[tuple[str, str | None, bool]]:
    """(name, default as written, keyword-only) of each parameter a signature shows."""
    found = []
    keyword_only = False
    for parameter in signature.findall(lambda n: n.tagname == "desc_parameter"):
        text = parameter.astext().strip()
        if text == "*":
            keyword_only = True
            continue
        name, _, default = text.partition("=")
        found.append((name.strip(), default.strip() or None, keyword_only))
    return found


def test_described_python_objects_exist(manual: Manual) -> None:
    import django_resetdb.pipeline  # noqa: F401

    assert len(manual.python_objects) >= 50
    for dotted, objtype in manual.python_objects.items():
        value = _import(dotted)
        if objtype in ("class", "exception"):
            assert inspect.isclass(value), dotted
        if objtype == "exception":
            assert issubclass(value, Exception), dotted
    for tree in manual.doctrees.values():
        for desc in tree.findall(lambda n: n.tagname == "desc"):
            if desc.get("domain") != "py" or desc.get("objtype") not in ("function", "method"):
                continue
            signature = desc.children[0]
            dotted = signature["ids"][0]
            real = inspect.signature(_import(dotted))
            parameters = list(real.parameters.values())
            if desc.get("objtype") == "method":
                parameters = parameters[1:]
            by_name = {p.name: p for p in parameters}
            shown = _documented_parameters(signature)
            for name, default, keyword_only in shown:
                assert name in by_name, f"{dotted}: no parameter {name!r}"
                parameter = by_name[name]
                kind = parameter.kind == inspect.Parameter.KEYWORD_ONLY
                assert kind == keyword_only, f"{dotted}({name}): keyword-only is {kind}"
                if default is None:
                    assert parameter.default is inspect.Parameter.empty, f"{dotted}({name})"
                elif default != "...":
                    written = eval(default, vars(builtins))
                    assert written == parameter.default, f"{dotted}({name}={default})"
            order = [name for name, _, _ in shown]
            assert order == [p.name for p in parameters if p.name in order], dotted
            for parameter in parameters:
                if parameter.name not in order:
                    assert parameter.default is not inspect.Parameter.empty, (
                        f"{dotted}: the required parameter {parameter.name!r} is not shown"
                    )


# Messages of Django's own that troubleshooting.rst explains.
FOREIGN_MESSAGES = {"Error loading psycopg2 or psycopg module", "Unknown command: 'resetdb'"}


def _troubleshooting_messages(manual: Manual) -> list[str]:
    tree = manual.doctrees["troubleshooting"]
    messages = []
    for term in tree.findall(nodes.term):
        for literal in term.findall(nodes.literal):
            messages.append(literal.astext())
    return messages


def test_troubleshooting_lists_the_messages_the_code_raises(
    manual: Manual, templates: list[Template]
) -> None:
    checks = (PACKAGE / "checks.py").read_text(encoding="utf-8")
    documented = []
    for message in _troubleshooting_messages(manual):
        if message in FOREIGN_MESSAGES:
            continue
        if re.fullmatch(r"(django_resetdb\.)?[EW]\d{3}", message):
            assert message.rsplit(".", 1)[-1] in checks, message
            continue
        assert _printed_by_code(message, templates), f"the code prints no {message!r}"
        documented.append(_pattern(message))
    missing = []
    for template in templates:
        if not template.raised or template.literal < 15:
            continue
        run = template.longest_run()
        wrapped = f"{WILDCARD}{template.text}{WILDCARD}"
        if not any(run in message and _intersects(message, wrapped) for message in documented):
            missing.append(f"{template.where}: {template.text.replace(WILDCARD, '…')}")
    assert not missing, "raised but not in docs/troubleshooting.rst:\n" + "\n".join(missing)
