"""Seeds: fixture labels loaded as ``loaddata`` loads them, and Python callables, in the
configured order and in one transaction."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.dom import pulldom

from django.apps import apps
from django.core.management.base import CommandError
from django.core.management.utils import parse_apps_and_model_labels
from django.db import IntegrityError, connections, models, transaction

from django_resetdb import dependencies, faults, guard, postgres
from django_resetdb.aliases import same_database, sharing
from django_resetdb.conf import SETTING_NAME, get_settings, project_root
from django_resetdb.exceptions import ResetError, TransactionEnded, refuse_string
from django_resetdb.fixtureload import (
    BULK_INSERTED,
    BULK_PATHS,
    COPIED,
    BulkLoader,
    DjangoLoader,
    FixtureFinder,
    Loader,
    Where,
    model_labels,
    read_dicts,
)
from django_resetdb.output import Log, one_line, quiet, relative_path
from django_resetdb.progress import NO_PROGRESS, Progress

Report = Callable[[str], None]

# PostgreSQL's detail line for a foreign key violation.


@dataclass(frozen=True)
class Seed:
    """One entry of ``SEEDS``, resolved: fixture files, or a callable."""

    entry: str
    files: tuple[str, ...] = ()
    function: Callable[..., Any] | None = None

    @property
    def kind(self) -> str:
        return "fixture" if self.function is None else "callable"

    def describe(self) -> str:
        if self.function is None:
            return f"fixture {', '.join(display_path(path) for path in self.files)}"
        source = inspect.getsourcefile(self.function) if inspect.isfunction(self.function) else None
        return f"callable in {display_path(source)}" if source else "callable"


@dataclass(frozen=True)
class SeedReport:
    entry: str
    kind: str
    objects: int | None
    seconds: float

    def line(self, width: int = 0) -> str:
        count = "done" if self.objects is None else f"{self.objects} object(s)"
        return f"  {self.entry:<{width}}  {count} in {self.seconds:.2f} s"


@dataclass
class SeedResult:
    alias: str
    database: str
    reports: list[SeedReport] = field(default_factory=list)
    seconds: float = 0.0
    # The files and environment variables the seeds read, for the snapshot cache.
    reads: dependencies.Reads = field(default_factory=dependencies.Reads)
    # The fixtures' objects by the path they took: "copied" (COPY), "inserted in bulk"
    # (a multi-row INSERT: rows that existed, rows without a primary key), or the reason
    # they were saved by Django one by one. Callables' objects are not in it.
    paths: dict[str, int] = field(default_factory=dict)

    @property
    def copied(self) -> int:
        return self.paths.get(COPIED, 0)

    @property
    def inserted(self) -> int:
        return self.paths.get(BULK_INSERTED, 0)

    @property
    def one_by_one(self) -> dict[str, int]:
        """Objects saved one by one, by reason."""
        return {k: v for k, v in sorted(self.paths.items()) if k not in BULK_PATHS}

    def paths_line(self) -> str:
        """``objects by path: N copied, M saved one by one (reason: count, ...)``."""
        parts = [f"{self.copied} copied"]
        if self.inserted:
            parts.append(f"{self.inserted} inserted in bulk")
        reasons = self.one_by_one
        line = f"{sum(reasons.values())} saved one by one"
        if reasons:
            line += " (" + ", ".join(f"{why}: {n}" for why, n in reasons.items()) + ")"
        parts.append(line)
        return "objects by path: " + ", ".join(parts)

    @property
    def objects(self) -> int:
        return sum(report.objects or 0 for report in self.reports)

    def summary(self) -> str:
        return (
            f"Seeded database {self.database!r} (alias {self.alias!r}): "
            f"{len(self.reports)} seed(s), {self.objects} object(s) in {self.seconds:.2f} s."
        )


def display_path(path: str | None) -> str:
    """``path`` relative to the project when it is inside it."""
    return relative_path(path, project_root()) if path else ""


def configured_seeds() -> tuple[str, ...]:
    return get_settings().seeds


def resolve_seeds(entries: Sequence[str], *, database: str = "default") -> list[Seed]:
    """Resolve each entry to its fixture files or callable, and check what can be checked
    before anything changes; touches no database.

    An entry is a callable when it is a dotted path that imports to a callable and does
    not end with a fixture format or compression extension; otherwise it is a fixture
    label, found as ``loaddata`` finds it. Each fixture file must parse, and every model
    its objects name must be installed.
    """
    finder = FixtureFinder(database)
    seeds: list[Seed] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ResetError(f"Seed {entry!r} is not a fixture label or a dotted path.")
        function, unimportable = _import_callable(entry, finder)
        if function is not None:
            seeds.append(Seed(entry, function=function))
            continue
        try:
            files = finder.find(entry)
        except CommandError as exc:
            # A dotted path that no fixture has as its label: the import's failure leads,
            # unless it is a fixture's label with its extension misspelt.
            if unimportable is not None and not _close_format(entry, finder):
                close = _did_you_mean(unimportable.close)
                where = f" in {SETTING_NAME}['SEEDS']" if entry in configured_seeds() else ""
                raise ResetError(
                    f"Seed {entry!r} {unimportable.problem}{close}; fix the dotted path"
                    f"{where} or name a fixture."
                ) from (unimportable.error or exc)
            raise ResetError(_not_found(entry, exc, finder)) from exc
        _check_models(entry, files, finder)
        seeds.append(Seed(entry, files=tuple(files)))
    return seeds


@dataclass(frozen=True)
class _Unimportable:
    """Why a dotted path is not a callable: a clause after the entry ("cannot be imported:
    ..."), the close names that exist, and the error, if any."""

    problem: str
    close: list[str]
    error: BaseException | None = None


def _import_callable(entry: str, finder: FixtureFinder) -> tuple[Any, _Unimportable | None]:
    """The callable ``entry`` names, or ``None`` and why it is not one (``None`` too when
    it does not look like a dotted path)."""
    module_path, _, name = entry.rpartition(".")
    if not module_path or name in finder.formats or name in finder.compressions:
        return None, None
    if not all(part.isidentifier() for part in entry.split(".")):
        return None, None
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        missing = exc.name
        if not missing or not (module_path + ".").startswith(missing + "."):
            # The module exists but something it imports does not: a real error.
            raise ResetError(f"Seed {entry!r}: importing it failed: {exc}.") from exc
        return None, _Unimportable(
            f"cannot be imported: {exc}", _close_modules(entry, missing), exc
        )
    except ImportError as exc:
        raise ResetError(f"Seed {entry!r}: importing it failed: {exc}.") from exc
    except Exception as exc:
        raise ResetError(
            f"Seed {entry!r}: importing it failed: {type(exc).__name__}: {exc}."
        ) from exc
    try:
        function = getattr(module, name)
    except AttributeError as exc:
        close = _close_callables(module, module_path, name)
        if _is_module(entry):
            return None, _Unimportable("is a module, not a callable", close)
        problem = f"cannot be imported: module {module_path!r} has no attribute {name!r}"
        return None, _Unimportable(problem, close, exc)
    except Exception as exc:
        raise ResetError(
            f"Seed {entry!r}: importing it failed: {type(exc).__name__}: {exc}."
        ) from exc
    if not callable(function):
        close = _close_callables(module, module_path, name)
        return None, _Unimportable(f"is a {type(function).__name__}, not a callable", close)
    return function, None


def _is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except Exception:
        return False


def _close_modules(entry: str, missing: str) -> list[str]:
    """``entry`` with module ``missing`` replaced by the closest module beside it: among
    the modules of its nearest parent package, or the top-level ones."""
    parent, _, last = missing.rpartition(".")
    if parent:
        paths = getattr(sys.modules.get(parent), "__path__", None)
        names = [info.name for info in pkgutil.iter_modules(paths)] if paths else []
    else:
        names = [info.name for info in pkgutil.iter_modules()]
    rest = entry[len(missing) :]
    return [
        f"{parent}.{found}{rest}" if parent else f"{found}{rest}"
        for found in difflib.get_close_matches(last, sorted(set(names)), n=1)
    ]


def _close_callables(module: Any, module_path: str, name: str) -> list[str]:
    """The dotted path of the public callable of ``module`` closest to ``name``."""
    names = [
        found
        for found, value in vars(module).items()
        if not found.startswith("_") and callable(value) and found != name
    ]
    return [
        f"{module_path}.{found}" for found in difflib.get_close_matches(name, sorted(names), n=1)
    ]


def _close_format(entry: str, finder: FixtureFinder) -> list[str]:
    """``entry`` with its last part, close to a format or compression extension, replaced
    by that extension, when a fixture has that label."""
    head, _, last = entry.rpartition(".")
    extensions = [*finder.formats, *finder.compressions]
    for extension in difflib.get_close_matches(last, extensions, n=3):
        try:
            finder.find(f"{head}.{extension}")
        except (CommandError, ValueError):
            continue
        return [f"{head}.{extension}"]
    return []


def _did_you_mean(close: Sequence[str]) -> str:
    return f" (did you mean {close[0]!r}?)" if close else ""


def _not_found(entry: str, exc: CommandError, finder: FixtureFinder) -> str:
    """What ``loaddata`` says of a label it does not find, and the close labels found."""
    text = str(exc).rstrip(".")
    if text.startswith("No fixture named"):
        close = finder.close_labels(entry)
    elif text.startswith("Problem installing fixture"):  # an unknown extension
        close = _close_format(entry, finder)
    else:
        close = []
    return f"Seed {entry!r}: {text}{_did_you_mean(close)}."


def _check_models(entry: str, files: Sequence[str], finder: FixtureFinder) -> None:
    """Refuse a fixture that does not parse or names a model that is not installed: found
    now, before anything changes, rather than when it is loaded, after the migrations."""
    for path in files:
        shown = display_path(path)
        try:
            read = model_labels(finder, path, shown)
        except ResetError as exc:
            raise ResetError(f"Seed {entry!r}: {exc}; nothing was changed.") from exc
        except Exception as exc:  # a file that cannot be opened or decompressed
            raise ResetError(
                f"Seed {entry!r}: fixture {shown} cannot be read ({one_line(exc)}); nothing "
                "was changed."
            ) from exc
        if read is None:
            continue  # a format of the project's own: the loader checks its models
        problems: list[tuple[int, str]] = []
        if read.odd is not None:
            position, what = read.odd
            problems.append((position, f", object {position}, {what}"))
        for label, position in read.labels.items():
            problem = _unknown_model(label)
            if problem is not None:
                problems.append(
                    (position, f", object {position}, names model {label!r}, {problem}")
                )
        if problems:
            _, problem = min(problems)
            raise ResetError(f"Seed {entry!r}: fixture {shown}{problem}; nothing was changed.")


def _unknown_model(label: str) -> str | None:
    """Why ``label`` names no installed model (as Django's deserializers look it up), and
    the closest label that does; ``None`` when it names one."""
    try:
        apps.get_model(label)
    except Exception:
        pass
    else:
        return None
    app_label, dot, model_name = label.partition(".")
    if not dot or "." in model_name:
        problem = "which is not an 'app_label.ModelName' label"
        close = _close_models(None, model_name or app_label)
    elif app_label not in apps.app_configs:
        problem = f"but no app {app_label!r} is installed"
        close = _close_models(app_label, model_name)
    else:
        problem = "which is not installed"
        close = _close_models(app_label, model_name)
    return f"{problem}{_did_you_mean(close)}"


def _close_models(app_label: str | None, model_name: str) -> list[str]:
    """The installed model closest to ``app_label.model_name``: a model of that app with
    a close name; else one of that very name in the closest app; else one whose name and
    app are both close."""
    wanted = model_name.lower()
    installed = [(m._meta.app_label, str(m._meta.model_name)) for m in apps.get_models()]
    if app_label in apps.app_configs:
        names = [name for app, name in installed if app == app_label]
        close = difflib.get_close_matches(wanted, names, n=1)
        if close:
            return [f"{app_label}.{close[0]}"]

    def score(model: tuple[str, str]) -> float:
        app, name = model
        if app_label is None:
            return _likeness(wanted, name)
        app_score = _likeness(app_label.lower(), app)
        return 1 + app_score if name == wanted else min(_likeness(wanted, name), app_score)

    best = max(installed, key=score, default=None)
    return [f"{best[0]}.{best[1]}"] if best is not None and score(best) >= 0.6 else []


def _likeness(a: str, b: str) -> float:
    """What ``difflib.get_close_matches`` measures (0.6 and more: close)."""
    return difflib.SequenceMatcher(None, a, b).ratio()


def seed(
    labels: Sequence[str] | None = None,
    *,
    database: str = "default",
    exclude: Sequence[str] = (),
    log: Log = quiet,
    gates: bool = True,
    then: Sequence[str] = (),
    progress: Progress = NO_PROGRESS,
    progress_prefix: str = "  ",
) -> SeedResult:
    """Run ``labels`` (default: ``SEEDS``) into ``database`` in one transaction.

    With ``gates`` (the default) the guard's gates run first, so that sample data never
    reaches a database a reset would not be allowed on. ``then`` is SQL to run in the
    same transaction once the rows are in (the foreign keys and indexes a reset builds
    after loading); a foreign key it adds that a row breaks is reported as the seeds'.

    On PostgreSQL the rows are written in bulk (:class:`BulkLoader`); on any other
    database Django saves them one at a time, as ``loaddata`` does (:class:`DjangoLoader`).
    ``progress`` shows, after ``progress_prefix``, the seed running and the objects its
    fixtures have loaded so far, or the seconds a callable has run.
    """
    refuse_string(labels, "the seed labels")
    refuse_string(exclude, "the excluded labels")
    entries = configured_seeds() if labels is None else tuple(labels)
    connection = connections[database]
    postgresql = connection.vendor == "postgresql"
    if then and not postgresql:
        raise ResetError(
            f"SQL after the seeds is run only on PostgreSQL; alias {database!r} uses "
            f"{connection.vendor}."
        )
    if gates:
        name = guard.check_seed(database)
    elif postgresql:
        name = postgres.connection_target(connection).database
    else:
        name = str(connection.settings_dict["NAME"])
    try:
        excluded_models, excluded_apps = parse_apps_and_model_labels(exclude)
    except CommandError as exc:
        raise ResetError(f"--exclude: {exc}") from exc
    seeds = resolve_seeds(entries, database=database)
    result = SeedResult(alias=database, database=name)
    width = max((len(s.entry) for s in seeds), default=0)
    started = time.monotonic()
    finder = FixtureFinder(database)
    # A reset shares its aliases' connections itself (see aliases); a seed on its own
    # gives its database's other aliases the seed's connection.
    twins = (
        {twin: database for twin in same_database(database, name)} if gates and postgresql else {}
    )
    with (
        sharing(twins),
        dependencies.record() as result.reads,
        transaction.atomic(using=database),
        _watching(database) as watch,
    ):
        # Foreign keys are checked once every seed is in, as loaddata's are at commit: an
        # object may name one that comes later in its file or in a later seed, even when
        # a migrate earlier in the caller's transaction left some checked immediately.
        # (SQLite's are deferred to the commit, as Django declares them.)
        loader: Loader
        transaction_id = ""
        if postgresql:
            transaction_id = postgres.transaction_id(connection)
            postgres.restore_constraint_modes(connection)
            loader = BulkLoader(
                database, excluded_models=excluded_models, excluded_apps=excluded_apps
            )
        else:
            loader = DjangoLoader(
                database, excluded_models=excluded_models, excluded_apps=excluded_apps
            )
        for item in seeds:
            step = time.monotonic()
            shown = f"{progress_prefix}{item.entry}:"
            try:
                if item.function is None:
                    objects: int | None = _load(loader, finder, item, progress, shown)
                else:
                    # What the fixtures before it would have left, as loaddata leaves it.
                    loader.finish()
                    with progress.seconds(f"{shown} running,"):
                        objects = _call(item, database, log)
            except ResetError as exc:
                watch.refuse(item, database)
                _refuse_ended(connection, transaction_id, item, standalone=gates)
                raise ResetError(
                    f"Seed {item.entry!r} failed: {str(exc).rstrip('.')}; nothing was written."
                ) from exc
            watch.refuse(item, database)
            _refuse_ended(connection, transaction_id, item, standalone=gates)
            faults.reached("seed", item.entry)
            report = SeedReport(item.entry, item.kind, objects, time.monotonic() - step)
            result.reports.append(report)
            log(report.line(width), 1)
        if seeds:
            later = ", then foreign keys and indexes" if then else ""
            progress.update(
                f"{progress_prefix}{result.objects} object(s): writing{later}", force=True
            )
        try:
            loader.complete()
            result.paths = dict(loader.paths)
        except ResetError as exc:
            raise ResetError(
                f"Seeding failed: {str(exc).rstrip('.')}; nothing was written."
            ) from exc
        if then:
            try:
                with transaction.atomic(using=database):
                    postgres.execute_batches(connections[database], then)
            except IntegrityError as exc:
                raise ResetError(
                    f"Seeding failed: {_dangling(loader, database, exc)}; nothing was written."
                ) from exc
        # Before the sequences move: PostgreSQL does not roll back setval().
        _check_foreign_keys(loader, database)
        loader.reset_sequences()
    progress.clear()
    result.seconds = time.monotonic() - started
    return result


def _load(loader: Loader, finder: FixtureFinder, item: Seed, progress: Progress, shown: str) -> int:
    """Load a fixture seed's files; return the objects saved."""
    loaded = 0

    def counted(saved: int) -> None:
        # The first always shows: reading a large file may take a while before it.
        so_far = loaded + saved
        progress.update(f"{shown} {so_far} object(s) so far", force=so_far == 1)

    progress.update(f"{shown} 0 object(s) so far", force=True)
    for path in item.files:
        loaded += loader.load_file(finder, path, counted if progress.enabled else None)
    return loaded


# How often the sessions waiting for the seeds' locks are looked at.
WATCH_INTERVAL = 0.1


class _LockWatch(threading.Thread):
    """While the seeds run, cancels the statements of sessions that have waited longer
    than ``LOCK_TIMEOUT`` for a lock this transaction holds: a seed callable's own
    connection to the database would otherwise wait for the end of a transaction that
    waits for it, for good."""

    def __init__(self, alias: str, pid: int, seconds: float) -> None:
        super().__init__(name="django_resetdb lock watch", daemon=True)
        self.alias, self.pid, self.seconds = alias, pid, seconds
        self.stopping = threading.Event()
        self.cancelled: list[postgres.Session] = []
        self.reported = False

    def run(self) -> None:
        # A connection of this thread's own: Django's may not cross threads.
        connection = connections[self.alias]
        try:
            with connection.cursor() as cursor:
                while not self.stopping.wait(WATCH_INTERVAL):
                    for session in postgres.waiting_on(cursor, self.pid, self.seconds):
                        # Noted before the cancel: the seed may fail with it at once.
                        if all(s.pid != session.pid for s in self.cancelled):
                            self.cancelled.append(session)
                        postgres.cancel_on(cursor, session.pid)
        except Exception:
            pass  # no watch then: the seeds run as they would without it
        finally:
            connection.close()

    def refuse(self, item: Seed, database: str) -> None:
        """Fail the seed that made a session wait, even if it went on after the cancel."""
        if not self.cancelled or self.reported:
            return
        self.reported = True
        first = self.cancelled[0]
        raise ResetError(
            f"Seed {item.entry!r} failed: it opened its own connection (pid {first.pid}, "
            f"application {first.application!r}) that waited for a lock this reset holds, "
            f"cancelled after {self.seconds:g} s; use the alias the seed is given "
            f"({database!r}); nothing was written."
        )


class _NoWatch:
    """No watch: outside PostgreSQL (SQLite) a second connection waits for a lock at most
    its own busy timeout, then fails."""

    def refuse(self, item: Seed, database: str) -> None:
        pass


@contextlib.contextmanager
def _watching(database: str) -> Iterator[_LockWatch | _NoWatch]:
    if connections[database].vendor != "postgresql":
        yield _NoWatch()
        return
    watch = _LockWatch(
        database, postgres.backend_pid(connections[database]), get_settings().lock_timeout
    )
    watch.start()
    try:
        yield watch
    finally:
        watch.stopping.set()
        watch.join(timeout=10)


def _refuse_ended(connection: Any, transaction_id: str, item: Seed, *, standalone: bool) -> None:
    """Raise :class:`TransactionEnded` when seed ``item`` ended the transaction the seeds
    run in (``transaction_id``) with a ``COMMIT`` or ``ROLLBACK`` sent as SQL: the rest of
    the run would go on in a transaction of its own, and "nothing was written" could be
    untrue. ``standalone``: the seed command's own transaction, no reset's."""
    if not transaction_id:
        return
    status = postgres.transaction_ended(connection, transaction_id)
    if not status:
        return
    committed = status == "committed"
    how = "committed" if committed else "rolled back"
    sent = "COMMIT" if committed else "ROLLBACK"
    message = (
        f"Seed {item.entry!r} failed: it {how} the transaction it runs in (a {sent} sent as "
        "SQL); a seed must not end the transaction"
    )
    if not committed:
        message += "; nothing was written."
    elif standalone:
        message += "; what was written up to it is committed, the seeds after it did not run."
    else:
        message += "."
    raise TransactionEnded(message, committed=committed)


def _call(item: Seed, database: str, log: Log) -> int | None:
    def report(message: str) -> None:
        log(f"    {message}", 2)

    assert item.function is not None
    try:
        returned = item.function(database, report)
    except ResetError:
        raise
    except SystemExit as exc:
        # Left to go on, it would end the command with the callable's status (0 for
        # success) after the transaction was rolled back, or pass for a guard's refusal.
        raise ResetError(f"it called sys.exit({exc.code!r}): a seed must return or raise") from exc
    except Exception as exc:
        # A database error's text spans lines (PostgreSQL's LINE 1: ... ^): one line.
        raise ResetError(f"{type(exc).__name__}: {one_line(exc)}") from exc
    if isinstance(returned, int) and not isinstance(returned, bool):
        return returned
    return None


def _check_foreign_keys(loader: Loader, database: str) -> None:
    """Check the deferred foreign keys now, so that a missing target is reported with
    the object that names it, rather than at commit."""
    connection = connections[database]
    # PostgreSQL checks every deferred constraint at once. Elsewhere (SQLite) the check
    # reads tables: those loaded, as loaddata checks them, and their many-to-many rows,
    # not a broken row the database held before.
    tables = None if connection.vendor == "postgresql" else _loaded_tables(loader)
    try:
        with transaction.atomic(using=database):
            connection.check_constraints(table_names=tables)
    except IntegrityError as exc:
        raise ResetError(
            f"Seeding failed: {_dangling(loader, database, exc)}; nothing was written."
        ) from exc


def _loaded_tables(loader: Loader) -> list[str]:
    tables: set[str] = set()
    for model in loader.models:
        for cls in (model, *model._meta.get_parent_list()):
            tables.add(cls._meta.db_table)
            for m2m in cls._meta.local_many_to_many:
                through: Any = m2m.remote_field.through
                tables.add(through._meta.db_table)
    return sorted(tables)


def _dangling(loader: Loader, database: str, exc: IntegrityError) -> str:
    """Which object names a row that does not exist, and where it comes from."""
    missing = postgres.missing_key(exc)
    plain = " ".join(str(exc).split()).rstrip(".")
    if missing is None:
        return plain
    table = missing.table
    model = next(
        (m for m in apps.get_models(include_auto_created=True) if m._meta.db_table == table),
        None,
    )
    if model is None:
        return plain
    column, value = missing.column, missing.value
    fk = next((f for f in model._meta.concrete_fields if f.column == column), None)
    if fk is None or fk.related_model is None:
        return plain
    target = fk.related_model._meta.label_lower
    manager = model._base_manager.using(database)
    if model._meta.auto_created:
        # A many-to-many row: report the object whose field lists the missing target.
        owner_fk = next(f for f in model._meta.concrete_fields if f.is_relation and f is not fk)
        owner: Any = owner_fk.related_model
        owner_pk = manager.filter(**{fk.attname: value}).values_list(owner_fk.attname, flat=True)
        m2m = next(f for f in owner._meta.many_to_many if f.remote_field.through is model)
        return _where_message(loader, owner, owner_pk.first(), f"{m2m.name} lists {target} {value}")
    pk = manager.filter(**{fk.attname: value}).values_list("pk", flat=True).first()
    what = f"{fk.name} = {value} names a {target} that does not exist"
    return _where_message(loader, model, pk, what)


def _where_message(loader: Loader, model: type[models.Model], pk: Any, what: str) -> str:
    label = model._meta.label_lower
    where = locate(loader.files, label, pk)
    if where is None:
        return f"{label}(pk={pk!r}): {what} (not from a fixture)"
    return f"{where.describe()} ({label}, pk={pk!r}): {what}"


def locate(files: Sequence[str], label: str, pk: Any) -> Where | None:
    """The last place in ``files`` where object ``label`` with ``pk`` is defined."""
    finder = FixtureFinder("default")
    found: Where | None = None
    for path in files:
        for position, (model, key) in enumerate(_identities(finder, path), start=1):
            if model == label and str(key) == str(pk):
                found = Where(path, position)
    return found


def _identities(finder: FixtureFinder, path: str) -> Iterator[tuple[str, Any]]:
    stream, ser_fmt, cmp_fmt = finder.open(path)
    try:
        if ser_fmt == "xml":
            node: Any
            for event, node in pulldom.parse(stream):
                if event == pulldom.START_ELEMENT and node.tagName == "object":
                    yield node.getAttribute("model").lower(), node.getAttribute("pk")
        elif ser_fmt in ("json", "jsonl", "yaml"):
            for item in read_dicts(stream, ser_fmt, cmp_fmt, path):
                yield str(item.get("model", "")).lower(), item.get("pk")
    finally:
        stream.close()


def list_lines(seeds: Sequence[Seed]) -> list[str]:
    width = max((len(s.entry) for s in seeds), default=0)
    return [f"  {number}. {s.entry:<{width}}  {s.describe()}" for number, s in enumerate(seeds, 1)]
