"""``resetdb`` against the hand-written flow on a project made with ``wagtail start``.

``python -m bench.wagtailsite --pages 36 --repeat 3`` makes a site with ``wagtail start``
(about 190 third-party migrations, data migrations among them, and the hand-written one of
its ``home`` app), adds an app of its own (``blog``: authors and posts, with its own
migrations), migrates it once and creates ``pages`` pages (published, so with revisions),
a few users and the blog's rows through Wagtail's and Django's API, and dumps them into the
fixture ``site`` that ``DJANGO_RESETDB['SEEDS']`` names (users with natural primary keys,
everything with natural foreign keys). Two copies of the site get a database each; each
repetition then times whole processes, from start to exit, Django's start-up included:

* the hand-written flow (``bench.handwritten``): drop and create ``public``, delete blog's
  migrations, then ``makemigrations blog``, ``migrate`` and ``loaddata site``;
* ``resetdb --no-input`` cold: after a model change (a new field of blog's posts);
* ``resetdb --no-input`` warm: again, nothing changed;
* ``loaddata site`` and ``seed site`` on the hand-written copy, over the rows the fixture
  left there (each leaves them as they were).

It prints medians, the ratio to the hand-written flow and peak memory (the whole process).
The server comes from ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``); the databases it creates are dropped,
snapshots included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from psycopg import sql

from bench.reset import Site, header, median, row
from bench.seed import DEFAULT_URL, Server

SETTINGS = "mysite.settings.dev"
FIXTURE = "site"

# Appended to the generated development settings: the database from DATABASE_URL, this
# package and django.contrib.postgres (which Django 6 requires for wagtailsearch's index on
# PostgreSQL) installed, the fixture as the seed.
LOCAL_SETTINGS = f"""

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": unquote(_url.hostname or ""),
        "PORT": str(_url.port or ""),
    }}
}}
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.postgres", "blog", "django_resetdb"]
DEBUG = True
DJANGO_RESETDB = {{"SEEDS": [{FIXTURE!r}]}}
"""

BLOG_MODELS = """\
from django.conf import settings
from django.db import models


class Author(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=100, unique=True)


class Post(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="posts")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["title"], name="blog_post_title_idx")]
"""

# Run by ``manage.py shell``: pages in sections of six under the home page, each published
# (a revision each), their owners spread over a few editors, and the blog's rows.
CONTENT = """
import datetime

from django.contrib.auth import get_user_model

from blog.models import Author, Post
from home.models import HomePage

pages = {pages}
editors = [
    get_user_model().objects.create_user(f"editor{{i}}", f"editor{{i}}@example.com", "secret")
    for i in range(1, 4)
]
home = HomePage.objects.get(slug="home")
section = home
for i in range(pages):
    owner = editors[i % len(editors)]
    parent = home if i % 6 == 0 else section
    page = parent.add_child(instance=HomePage(title=f"Page {{i}}", slug=f"page-{{i}}", owner=owner))
    page.save_revision(user=owner).publish()
    if i % 6 == 0:
        section = page
when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
for editor in editors:
    author = Author.objects.create(user=editor, name=editor.username.title())
    for i in range(pages):
        Post.objects.create(author=author, title=f"Post {{i}} by {{author.name}}", body="Text.",
                            published=when + datetime.timedelta(days=i))
"""

# Dumped with --natural-primary too: rows found again by their natural key. Wagtail's pages
# have a natural key (the URL path) but no manager method to look one up by it, so they keep
# their primary keys (and the root and home pages the migrations made are overwritten).
BY_NATURAL_KEY = ["auth.user"]
BY_PRIMARY_KEY = ["wagtailcore.page", "home.homepage", "wagtailcore.revision", "blog"]


@dataclass
class WagtailSite(Site):
    """A copy of the generated site with a database of its own."""

    changes: int = 0

    def change_a_model(self) -> None:
        self.changes += 1
        models = self.root / "blog" / "models.py"
        marker = "class Post(models.Model):\n"
        field = f"    extra{self.changes} = models.IntegerField(null=True)\n"
        models.write_text(models.read_text().replace(marker, marker + field, 1))


def check(site: WagtailSite, fixture: list[dict[str, object]], column: str = "") -> None:
    """Fail unless the site's database has a row for every object of the fixture (and the
    pages the migrations made, which it overwrites) and blog's posts have ``column``,
    counted over a connection of this process."""
    expected: dict[str, int] = {}
    for obj in fixture:
        table = str(obj["model"]).replace(".", "_")
        expected[table] = expected.get(table, 0) + 1
    found: dict[str, int] = {}
    with psycopg.connect(site.server.url_for(site.database)) as conn:
        for table in expected:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            (found[table],) = conn.execute(query).fetchone() or (0,)
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = 'blog_post' AND column_name = %s",
            [column],
        ).fetchone()
    if found != expected or (column and columns != (1,)):
        raise SystemExit(f"{site.database} has rows {found}, not {expected}, or no {column!r}.")


def make_template(server: Server, root: Path, pages: int) -> Path:
    """The site, its blog's first migration and its fixture, made in a migrated database
    that is dropped again."""
    template = root / "template"
    template.mkdir()
    site = WagtailSite(
        server, template, database=f"bench_h_{uuid.uuid4().hex[:10]}", settings=SETTINGS
    )
    wagtail = ("-c", "from wagtail.bin.wagtail import main; main()")
    site.run(*wagtail, "start", "mysite", str(template))
    with (template / "mysite" / "settings" / "dev.py").open("a") as handle:
        handle.write(LOCAL_SETTINGS)
    blog = template / "blog"
    (blog / "migrations").mkdir(parents=True)
    (blog / "fixtures").mkdir()
    for name in ("__init__.py", "migrations/__init__.py"):
        (blog / name).touch()
    (blog / "models.py").write_text(BLOG_MODELS)
    server.create(site.database)
    try:
        site.run("manage.py", "makemigrations", "blog", "-v", "0")
        site.run("manage.py", "migrate", "--no-input", "-v", "0")
        site.run("manage.py", "shell", "-c", CONTENT.format(pages=pages))
        dumps = (
            ("--natural-foreign", "--natural-primary", *BY_NATURAL_KEY),
            ("--natural-foreign", *BY_PRIMARY_KEY),
        )
        objects = []
        for options in dumps:
            objects += json.loads(site.run("manage.py", "dumpdata", *options).stdout)
        (blog / "fixtures" / f"{FIXTURE}.json").write_text(json.dumps(objects, indent=1))
    finally:
        site.drop()
    return template


@contextmanager
def site_copy(server: Server, template: Path, root: Path) -> Iterator[WagtailSite]:
    shutil.copytree(template, root, ignore=shutil.ignore_patterns("__pycache__"))
    made = WagtailSite(server, root, database=f"bench_h_{uuid.uuid4().hex[:10]}", settings=SETTINGS)
    server.create(made.database)
    try:
        yield made
    finally:
        made.drop()


def run(options: argparse.Namespace) -> int:
    server = Server(options.url)
    names = ("hand-written", "cold", "warm", "loaddata", "seed")
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    steps: dict[str, list[float]] = {}
    last: dict[str, list[str]] = {}
    with TemporaryDirectory(prefix="resetdb-bench-") as folder:
        template = make_template(server, Path(folder), options.pages)
        fixture = json.loads((template / "blog" / "fixtures" / f"{FIXTURE}.json").read_text())
        print(
            f"Project: wagtail start, {options.pages} page(s) added, an own app (blog); "
            f"fixture {FIXTURE!r} of {len(fixture)} objects."
        )
        with (
            site_copy(server, template, Path(folder) / "hand") as hand,
            site_copy(server, template, Path(folder) / "tool") as tool,
        ):
            tool.run("manage.py", "resetdb", "--no-input", "-v", "0")
            for _ in range(options.repeat):
                done = hand.run("-m", "bench.handwritten", "--apps", "blog", "--fixtures", FIXTURE)
                times["hand-written"].append(done.seconds)
                peaks["hand-written"].append(done.peak_mib)
                for step, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    steps.setdefault(step, []).append(seconds)

                tool.change_a_model()
                for name in ("cold", "warm"):
                    done = tool.run("manage.py", "resetdb", "--no-input")
                    times[name].append(done.seconds)
                    peaks[name].append(done.peak_mib)
                    last[name] = done.stdout.splitlines()
                check(hand, fixture)
                check(tool, fixture, f"extra{tool.changes}")
                # The fixture loaded again over its own rows, both ways: each leaves them
                # as they were.
                for name, command in (("loaddata", "loaddata"), ("seed", "seed")):
                    extra = ("-v", "2") if name == "seed" else ()
                    done = hand.run("manage.py", command, FIXTURE, *extra)
                    times[name].append(done.seconds)
                    peaks[name].append(done.peak_mib)
                    last[name] = done.stdout.splitlines()
                check(hand, fixture)

    hand_median = median(times["hand-written"])
    print(f"\nMedian of {options.repeat} run(s), whole processes:")
    header()
    row("hand-written flow", hand_median, "1.0x", max(peaks["hand-written"]))
    for step in ("drop", "makemigrations", "migrate", "loaddata"):
        row(f"  of which {step}", median(steps[step]), "", None)
    for name, label in (
        ("cold", "resetdb cold (after a model change)"),
        ("warm", "resetdb warm (nothing changed)"),
    ):
        seconds = median(times[name])
        row(label, seconds, f"{hand_median / seconds:.1f}x faster", max(peaks[name]))
    loaddata = median(times["loaddata"])
    row(f"loaddata {FIXTURE} (over its rows)", loaddata, "1.0x", max(peaks["loaddata"]))
    seconds = median(times["seed"])
    row(f"seed {FIXTURE} (over its rows)", seconds, f"{loaddata / seconds:.1f}x faster",
        max(peaks["seed"]))  # fmt: skip
    paths = [line.strip() for line in last.get("seed", []) if "objects by path:" in line]
    print(f"  {paths[-1] if paths else 'objects by path: not reported'}")
    for name in ("cold", "warm"):
        print(f"\nLast resetdb {name}:")
        for line in last.get(name, []):
            print(f"  {line}")
    return 0


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").strip())
    parser.add_argument("--pages", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
