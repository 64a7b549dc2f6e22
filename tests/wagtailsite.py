"""A project made with ``wagtail start``, as a user would make one, for the tests of
resetdb on a third-party-heavy site: the generated folder and its migrated database are
made once per session; each test gets a copy of the folder and a clone of the database.

The fixture file is generated from the installed Wagtail (not committed), so it follows
its version: a few users, collections, an image, pages and their revisions, dumped with
natural foreign keys, then put in an order where objects come before what they point at.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.conftest import (
    ProjectCopy,
    ScratchDatabase,
    clone_database,
    connect,
    drop_database,
    replaced_of,
    snapshots_of,
    states_of,
)

SETTINGS = "mysite.settings.dev"

# Appended to the generated development settings: this package installed, the database
# from DATABASE_URL (a scratch database of each test's own), DEBUG as generated (True).
LOCAL_SETTINGS = """

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": unquote(_url.hostname or ""),
        "PORT": str(_url.port or ""),
    }
}
# Django 6.0 checks that django.contrib.postgres is installed wherever its fields and
# indexes are used (postgres.E005): wagtailsearch's IndexEntry, on PostgreSQL.
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.postgres", "blog", "django_resetdb"]
DEBUG = True
"""

# An app of the project's own beside ``home``, with foreign keys into wagtail's tables and
# into home's: resetdb regenerates it and builds its tables from the models.
BLOG_MODELS = """\
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    home = models.ForeignKey("home.HomePage", null=True, blank=True, on_delete=models.SET_NULL)


class Post(models.Model):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="posts")
    page = models.ForeignKey("wagtailcore.Page", null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=200)

    class Meta:
        indexes = [models.Index(fields=["title"], name="blog_post_title_idx")]
"""

# Content made through Wagtail's own API, so the rows are the ones an editor would make.
CONTENT = """
from io import BytesIO

from django.contrib.auth import get_user_model
from django.core.files.images import ImageFile
from PIL import Image as PILImage
from wagtail.images import get_image_model
from wagtail.models import Collection

from home.models import HomePage

editor = get_user_model().objects.create_user("editor", "editor@example.com", "secret")
photos = Collection.get_first_root_node().add_child(name="Photos")
photos.add_child(name="Archive")
buffer = BytesIO()
PILImage.new("RGB", (4, 4), "red").save(buffer, "PNG")
get_image_model().objects.create(
    title="Red square", file=ImageFile(buffer, name="red.png"), collection=photos,
    uploaded_by_user=editor,
)
home = HomePage.objects.get(slug="home")
about = home.add_child(instance=HomePage(title="About", slug="about", owner=editor))
about.save_revision(user=editor).publish()
team = about.add_child(instance=HomePage(title="Team", slug="team", owner=editor))
team.save_revision(user=editor).publish()
"""

# Dumped in this order, which is also the order of the fixture: every model refers to one
# after it (a HomePage to its wagtailcore.Page row, a page to its revisions and owner, an
# image to its collection and uploader), and within a model children come first.
DUMPED = [
    "home.homepage",
    "wagtailcore.page",
    "wagtailcore.revision",
    # Its collection and uploader as natural keys: forward references loaddata resolves
    # only after the whole file is read.
    "wagtailimages.image",
    "wagtailcore.collection",
    "auth.user",
]


@dataclass
class WagtailSite:
    template: Path
    database: str
    fixture: Path


def copy_site(site: WagtailSite, root: Path) -> tuple[ProjectCopy, ScratchDatabase]:
    """A copy of the site's folder, pointed at a new clone of its migrated database."""
    shutil.copytree(site.template, root, ignore=shutil.ignore_patterns("__pycache__"))
    db = clone_database(site.database)
    return ProjectCopy(root, db.url(), settings=SETTINGS), db


def drop_clone(db: ScratchDatabase) -> None:
    for database in [db.name, *snapshots_of(db.name), *states_of(db.name), *replaced_of(db.name)]:
        drop_database(database)


def _run(project: ProjectCopy, *args: str, url: str | None = None) -> str:
    result = project.manage(*args, url=url)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def forward_referencing(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``objects`` by model in the order of DUMPED, the deepest tree nodes first."""

    def key(obj: dict[str, Any]) -> tuple[int, int, int]:
        # A HomePage row has no tree path of its own; a later page is never its parent.
        path = obj["fields"].get("path", "")
        return DUMPED.index(obj["model"]), -len(path), -int(obj["pk"])

    return sorted(objects, key=key)


def make_site(root: Path) -> WagtailSite:
    template = root / "template"
    template.mkdir()
    wagtail = [sys.executable, "-c", "from wagtail.bin.wagtail import main; main()"]
    subprocess.run([*wagtail, "start", "mysite", str(template)], check=True, capture_output=True)
    with (template / "mysite" / "settings" / "dev.py").open("a") as handle:
        handle.write(LOCAL_SETTINGS)
    (template / "blog" / "migrations").mkdir(parents=True)
    for name in ("blog/__init__.py", "blog/migrations/__init__.py"):
        (template / name).touch()
    (template / "blog" / "models.py").write_text(BLOG_MODELS)

    database = f"resetdb_t_{uuid.uuid4().hex[:12]}"
    with connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    site = WagtailSite(template, database, root / "site_content.json")
    try:
        made = ProjectCopy(template, ScratchDatabase(database).url(), settings=SETTINGS)
        _run(made, "makemigrations", "blog")
        _run(made, "migrate")

        # The content is made in a copy, so that the image file stays out of the template.
        editing, content_db = copy_site(site, root / "editing")
        try:
            _run(editing, "shell", "-c", CONTENT)
            dump = _run(editing, "dumpdata", "--natural-foreign", *DUMPED)
        finally:
            drop_clone(content_db)
        objects = forward_referencing(json.loads(dump))
        assert [obj["model"] for obj in objects[:2]] == ["home.homepage", "home.homepage"]
        site.fixture.write_text(json.dumps(objects, indent=2))

        # The reordered file is one loaddata accepts: the point is what seed does with it.
        checking, check_db = copy_site(site, root / "checking")
        try:
            _run(checking, "loaddata", str(site.fixture))
        finally:
            drop_clone(check_db)
    except BaseException:
        drop_database(database)
        raise
    return site


@pytest.fixture(scope="session")
def wagtail_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WagtailSite]:
    """The generated site, its database migrated once, and its fixture file."""
    site = make_site(tmp_path_factory.mktemp("wagtailsite"))
    try:
        yield site
    finally:
        drop_database(site.database)


@pytest.fixture
def site(
    wagtail_site: WagtailSite, tmp_path: Path
) -> Iterator[tuple[ProjectCopy, ScratchDatabase]]:
    """A copy of the site of this test's own, with a migrated database of its own."""
    project, db = copy_site(wagtail_site, tmp_path / "mysite")
    try:
        yield project, db
    finally:
        drop_clone(db)
