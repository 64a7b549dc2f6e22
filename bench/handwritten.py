"""The hand-written reset flow ``resetdb`` replaces, as such scripts run it, for the benchmark.

``python -m bench.handwritten --apps app00 app01 --fixtures app00 app01``, run in a
project's folder with its settings: drop and create the ``public`` schema, delete each
app's ``migrations`` folder (both in this process), then ``manage.py makemigrations`` for
those apps, ``manage.py migrate`` and ``manage.py loaddata``, each in a process of its own,
as the well-known script does it. Prints the seconds of each step as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", nargs="+", required=True)
    parser.add_argument("--fixtures", nargs="+", required=True)
    options = parser.parse_args()
    django.setup()
    from django.apps import apps
    from django.db import connection

    steps: dict[str, float] = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    for label in options.apps:
        shutil.rmtree(Path(apps.get_app_config(label).path) / "migrations", ignore_errors=True)
    steps["drop"] = time.perf_counter() - started
    for name, args in (
        ("makemigrations", ("makemigrations", *options.apps)),
        ("migrate", ("migrate",)),
        ("loaddata", ("loaddata", *options.fixtures)),
    ):
        step = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", *args, "-v", "0"], check=True)
        steps[name] = time.perf_counter() - step
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
