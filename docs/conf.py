"""Sphinx configuration of the manual: ``sphinx-build -W --keep-going -b html docs
docs/_build/html``. Only what ships with Sphinx: no extension, the alabaster theme."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path


def _version() -> str:
    """The package's version, read rather than imported: building the manual needs
    neither Django nor psycopg. From the installed distribution when the source is not
    beside the manual (an unpacked sdist whose package folder was removed)."""
    init = Path(__file__).resolve().parent.parent / "django_resetdb" / "__init__.py"
    if init.is_file():
        found = re.search(r'^__version__ = "([^"]+)"', init.read_text(encoding="utf-8"), re.M)
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version("django-resetdb-pg")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


project = "django_resetdb"
author = "django_resetdb developers"
project_copyright = "django_resetdb developers"
release = _version()
version = release

extensions: list[str] = []
exclude_patterns = ["_build"]
root_doc = "index"

# Literal blocks written with "::" are shown as they are; code blocks name their language.
highlight_language = "none"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"django_resetdb {release}"
html_theme_options = {
    "description": "Rebuild a PostgreSQL development database, safely and fast.",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
html_static_path: list[str] = []
html_show_sourcelink = False
