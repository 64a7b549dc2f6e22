"""Generate a synthetic Django project to measure resets and seeding on.

``python -m bench.synthetic OUT --apps 4 --models 10 --rows 500`` writes a project with
``apps`` apps of ``models`` models each. Every model has a unique field, an
``auto_now_add`` timestamp and, past the first, a foreign key to the previous model of
its app; the first model of every app but the first has a foreign key to the last model
of the previous app; every third model has a many-to-many to the previous one. Each app
gets one JSON fixture (``appNN``) with ``rows`` rows per model, and the same rows as
JSON lines (``appNN_lines``) for streaming loads. The database comes from
``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

CREATED = "2026-01-01T00:00:00Z"

MANAGE = """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synth.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SETTINGS = """\
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "synthetic-benchmark-project"
DEBUG = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_resetdb",
{apps}
]

_url = urlsplit(os.environ["DATABASE_URL"])
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": unquote(_url.netloc.rpartition("@")[2].rsplit(":", 1)[0]),
        "PORT": str(_url.port or ""),
    }}
}}
DJANGO_RESETDB = {{"ENABLED": True, "SEEDS": [{seeds}]}}
"""


@dataclass(frozen=True)
class Shape:
    apps: int
    models: int
    rows: int

    def app(self, index: int) -> str:
        return f"app{index:02d}"

    @staticmethod
    def model(index: int) -> str:
        return f"Model{index:02d}"

    @property
    def tables(self) -> int:
        m2m = sum(1 for k in range(self.models) if self.has_m2m(k))
        return self.apps * (self.models + m2m)

    @property
    def fixture_rows(self) -> int:
        """Rows the fixtures create, many-to-many rows included."""
        m2m = sum(1 for k in range(self.models) if self.has_m2m(k))
        return self.apps * (self.models * self.rows + m2m * self.rows * 2)

    @staticmethod
    def has_m2m(model: int) -> bool:
        return model % 3 == 2


def models_source(shape: Shape, app: int) -> str:
    lines = ["from django.db import models", ""]
    for k in range(shape.models):
        lines += ["", f"class {shape.model(k)}(models.Model):"]
        lines.append("    name = models.CharField(max_length=60)")
        lines.append("    number = models.IntegerField()")
        lines.append("    code = models.CharField(max_length=40, unique=True)")
        lines.append("    created = models.DateTimeField(auto_now_add=True)")
        if k > 0:
            lines.append(
                f"    parent = models.ForeignKey({shape.model(k - 1)!r}, "
                "on_delete=models.CASCADE, related_name='+')"
            )
        if k == 0 and app > 0:
            target = f"{shape.app(app - 1)}.{shape.model(shape.models - 1)}"
            lines.append(
                f"    upstream = models.ForeignKey({target!r}, on_delete=models.SET_NULL, "
                "null=True, related_name='+')"
            )
        if shape.has_m2m(k):
            lines.append(
                f"    peers = models.ManyToManyField({shape.model(k - 1)!r}, related_name='+')"
            )
    return "\n".join(lines) + "\n"


def fixture_objects(shape: Shape, app: int) -> list[dict[str, object]]:
    objects: list[dict[str, object]] = []
    label = shape.app(app)
    for k in range(shape.models):
        for i in range(1, shape.rows + 1):
            fields: dict[str, object] = {
                "name": f"{label} {shape.model(k)} row {i}",
                "number": i * (k + 1),
                "code": f"{label}-{k}-{i}",
                "created": CREATED,
            }
            if k > 0:
                fields["parent"] = (i * 7) % shape.rows + 1
            if k == 0 and app > 0:
                fields["upstream"] = None if i % 5 == 0 else (i * 3) % shape.rows + 1
            if shape.has_m2m(k):
                fields["peers"] = sorted({i, i % shape.rows + 1})
            objects.append(
                {"model": f"{label}.{shape.model(k).lower()}", "pk": i, "fields": fields}
            )
    return objects


def generate(out: Path, shape: Shape) -> list[str]:
    """Write the project into ``out`` (which must not exist) and return its fixture labels."""
    out.mkdir(parents=True)
    (out / "manage.py").write_text(MANAGE)
    package = out / "synth"
    package.mkdir()
    (package / "__init__.py").write_text("")
    labels = [shape.app(a) for a in range(shape.apps)]
    (package / "settings.py").write_text(
        SETTINGS.format(
            apps="\n".join(f"    {label!r}," for label in labels),
            seeds=", ".join(repr(label) for label in labels),
        )
    )
    for a, label in enumerate(labels):
        folder = out / label
        (folder / "migrations").mkdir(parents=True)
        (folder / "fixtures").mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "migrations" / "__init__.py").write_text("")
        (folder / "models.py").write_text(models_source(shape, a))
        objects = fixture_objects(shape, a)
        (folder / "fixtures" / f"{label}.json").write_text(json.dumps(objects, indent=1))
        (folder / "fixtures" / f"{label}_lines.jsonl").write_text(
            "".join(json.dumps(obj) + "\n" for obj in objects)
        )
    return labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").strip())
    parser.add_argument("out", type=Path, help="Folder to create.")
    parser.add_argument("--apps", type=int, default=4)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--rows", type=int, default=500)
    options = parser.parse_args(argv)
    shape = Shape(options.apps, options.models, options.rows)
    labels = generate(options.out, shape)
    print(
        f"Wrote {options.out}: {shape.apps} app(s) x {shape.models} model(s), "
        f"{shape.tables} table(s), fixtures {' '.join(labels)} with {shape.fixture_rows} row(s)."
    )


if __name__ == "__main__":
    main()
