"""The demo's database: ``DATABASE_URL`` when set, else an embedded PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

EMBEDDED_DATABASE = "resetdb_demo"
SCHEMES = {"postgres", "postgresql", "pgsql"}


def parse_database_url(url: str) -> dict[str, Any]:
    """Django DATABASES entry for ``postgres://user:password@host:port/name?option=value``.

    A Unix socket directory goes percent-encoded in the host part or as ``?host=``.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"DATABASE_URL must start with postgres://, not {parts.scheme!r}://")
    options = dict(parse_qsl(parts.query))
    # Not parts.hostname: it lower-cases, and socket directories are case-sensitive paths.
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host = hostport[1 : hostport.index("]")]
    else:
        host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    host = options.pop("host", unquote(host))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
    }


def start_embedded(data_dir: Path) -> dict[str, Any]:
    """Start (or reuse) the embedded PostgreSQL whose data lives in ``data_dir``.

    The server stops when the last process that started or reused it exits.
    """
    if importlib.util.find_spec("pgserver") is None:
        # pgserver has wheels up to CPython 3.12 only, so the dev extra skips it on newer ones.
        raise ImproperlyConfigured(
            "DATABASE_URL is not set and the embedded PostgreSQL (the pgserver package) is "
            f"not installed for Python {sys.version_info.major}.{sys.version_info.minor}; "
            "set DATABASE_URL=postgres://user:password@host:port/name."
        )
    _forget_dead_users(data_dir)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        # attr-defined where pgserver is installed (it has no stubs), unused where it is not.
        server = pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
            data_dir, cleanup_mode="stop"
        )
    entry = parse_database_url(server.get_uri(EMBEDDED_DATABASE))
    _create_database(entry)
    print(
        f"testproject: DATABASE_URL is not set; using the embedded PostgreSQL in {data_dir} "
        f"(socket directory {entry['HOST']}).",
        file=sys.stderr,
    )
    return entry


def _forget_dead_users(data_dir: Path) -> None:
    """Drop the pids of processes that died without cleaning up from pgserver's list.

    pgserver stops the server when its last user exits; a process that ended without
    running its exit handlers (killed, or os._exit) would otherwise keep it running.
    """
    import psutil

    users = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(users.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            users.write_text(json.dumps(alive))


def _create_database(entry: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=entry["HOST"], user=entry["USER"], dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [entry["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(entry["NAME"])))


def database_settings(base_dir: Path) -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return parse_database_url(url)
    return start_embedded(base_dir / ".pgdata")
