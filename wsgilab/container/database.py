"""Where the apps' PostgreSQL is, and the rules its endpoints share, the same for all three apps.

compose gives each app ``WSGILAB_DB_HOST`` (the ``db`` service), the
database's name and role, and ``WSGILAB_DB_PASSWORD_FILE``: the *path* of
the file that holds the role's password (written by the ``db-secrets``
service, wsgilab.container.db_secrets), never the password itself. So no
environment variable holds it: not the container's (``docker inspect``), not
a server's copy of it, not what ``/environ`` shows.

Without ``WSGILAB_DB_HOST`` (the native tier, a server started by hand)
there is no database: the apps serve every other endpoint, and the database
ones answer 503 with ``NOT_CONFIGURED``.

The endpoints' shared rules live here too, so the three apps agree on them:
``/items?limit=N`` (1 to ``MAX_LIMIT``), ``POST /items`` with
``{"name": "..."}`` (``parse_new_item``), ``/query?ms=N``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wsgilab.settings import SETTINGS, SettingError

#: What a database endpoint answers (503) where no database is configured.
NOT_CONFIGURED = ("no database is configured: WSGILAB_DB_HOST is not set (docker compose runs one, the db "
                  "service; docs/database.md)")
#: The most items ``/items?limit=N`` lists, and how many it lists without ``limit``.
MAX_LIMIT, DEFAULT_LIMIT = 1000, 20
#: The largest ``POST /items`` body read, and the longest name stored (the table's CHECK says the same).
MAX_ITEM_BODY, MAX_NAME = 4096, 200
#: Whom new items belong to: the owner the seed data creates for them.
POSTED_BY = "you"
#: The seed data: owners, and items that cycle through them, oldest first.
SEED_OWNERS = ("ada", "grace", "linus", POSTED_BY)
SEED_ITEMS = 30
#: How long ``/query?ms=N`` may sleep in the database (the same bound as /slow's).
MAX_SLEEP_MS = 10_000


class Misconfigured(RuntimeError):
    """A database is configured, but not usably: the message names the setting (a 503)."""


class BadInput(ValueError):
    """A database endpoint's input is not one it takes; the message says what it takes (a 400)."""


@dataclass(frozen=True)
class Database:
    """How to reach the database: libpq's connection parameters."""

    host: str
    port: int
    name: str
    user: str
    password: str
    #: PostgreSQL's ``statement_timeout`` for the app's sessions, in ms; 0: none.
    statement_timeout_ms: int = 0
    #: The app's service (django, flask, raw): its sessions' ``application_name``, which pg_stat_activity shows.
    application_name: str = ""

    def server_options(self) -> str:
        """libpq's ``options``: the settings PostgreSQL applies to each of the app's sessions as it starts."""
        return f"-c statement_timeout={self.statement_timeout_ms}"

    def session_kwargs(self) -> dict[str, object]:
        """The keywords that set up each of the app's sessions: its timeouts, and the app's name on it."""
        return {"connect_timeout": 5, "options": self.server_options(), "application_name": self.application_name}

    def connect_kwargs(self) -> dict[str, object]:
        """psycopg.connect()'s keywords."""
        return {"host": self.host, "port": self.port, "dbname": self.name, "user": self.user,
                "password": self.password, **self.session_kwargs()}


def configured(env: Mapping[str, str] = os.environ) -> Database | None:
    """The database compose configured for this app, or None where there is none.

    Raises Misconfigured, naming the setting, where one is set but unusable (a
    missing password file, a port that is not a number).
    """
    host = env.get("WSGILAB_DB_HOST", "")
    if not host:
        return None
    password_file = env.get("WSGILAB_DB_PASSWORD_FILE", "")
    try:
        with open(password_file, encoding="utf-8") as file:
            password = file.read().strip()
    except OSError as error:
        raise Misconfigured(f"WSGILAB_DB_PASSWORD_FILE={password_file!r}: {error.strerror}") from None
    port = env.get("WSGILAB_DB_PORT", "") or "5432"
    if not port.isdigit():
        raise Misconfigured(f"WSGILAB_DB_PORT must be a TCP port, not {port!r}")
    try:
        timeout = SETTINGS["WSGILAB_DB_STATEMENT_TIMEOUT_MS"].value(env.get("WSGILAB_DB_STATEMENT_TIMEOUT_MS"))
    except SettingError as error:
        raise Misconfigured(str(error)) from None
    return Database(host=host, port=int(port), name=env.get("WSGILAB_DB_NAME", "") or "wsgilab",
                    user=env.get("WSGILAB_DB_USER", "") or "wsgilab", password=password,
                    statement_timeout_ms=int(timeout), application_name=_application_name(env))


def _application_name(env: Mapping[str, str]) -> str:
    """The app's service name, as the launcher sets it (WSGILAB_SERVICE), if it is a plain word."""
    name = env.get("WSGILAB_SERVICE", "")
    return name if name.isascii() and name.isalnum() and len(name) < 64 else ""


def required(env: Mapping[str, str] = os.environ) -> Database:
    """The database compose configured; Misconfigured, saying why, where there is none or none usable."""
    settings = configured(env)
    if settings is None:
        raise Misconfigured(NOT_CONFIGURED)
    return settings


def connect_at_import(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the app should connect as it is imported (WSGILAB_DB_CONNECT_AT_IMPORT=on) to a configured database.

    The mistake ``hoptrace lab connection-before-fork`` makes on purpose.
    Without a usable database there is nothing to connect to: the endpoints
    say why when asked.
    """
    if env.get("WSGILAB_DB_CONNECT_AT_IMPORT", "") != "on":
        return False
    try:
        return configured(env) is not None
    except Misconfigured:
        return False


#: How to drop each connection the app opened as it was imported, and its backend's pid (``opened_at_import``).
_OPENED_AT_IMPORT: list[tuple[Callable[[], None], int]] = []


def opened_at_import(drop: Callable[[], None], backend_pid: int) -> None:
    """Note a connection the app opened as it was imported: ``drop()`` closes it in a worker forked since."""
    _OPENED_AT_IMPORT.append((drop, backend_pid))


def drop_inherited(env: Mapping[str, str] = os.environ) -> list[int]:
    """In a new worker, before it serves: drop the connections the app opened before the fork.

    gunicorn's post_fork hook calls it (gunicorn.conf.py), unless
    WSGILAB_DB_CLOSE_AFTER_FORK=off. Returns the backend pids of the
    connections dropped (none where the app was imported in the worker
    itself, or opened nothing at import).
    """
    if env.get("WSGILAB_DB_CLOSE_AFTER_FORK", "") == "off":
        return []
    dropped = []
    while _OPENED_AT_IMPORT:
        drop, backend_pid = _OPENED_AT_IMPORT.pop()
        drop()
        dropped.append(backend_pid)
    return dropped


def parse_limit(raw: str | None) -> int:
    """``/items``'s ``limit``: DEFAULT_LIMIT if absent, else a whole number from 1 to MAX_LIMIT."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_flag(name: str, raw: str | None) -> bool:
    """A 0/1 query parameter (``n_plus_one``); absent means 0."""
    if raw in (None, "", "0"):
        return False
    if raw == "1":
        return True
    raise BadInput(f"{name} must be 0 or 1")


def parse_sleep_ms(raw: str | None) -> int:
    """``/query``'s ``ms``: how long the query sleeps in the database, 0 to MAX_SLEEP_MS."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_SLEEP_MS:
        raise BadInput(f"ms must be a whole number of milliseconds from 0 to {MAX_SLEEP_MS}")
    return int(raw)


#: The longest a long poll (``/wait``) or an event stream (``/events``) may be held, in seconds.
MAX_WAIT_S = 30


def parse_wait_s(raw: str | None) -> int:
    """``/wait``'s and ``/events``' ``s``: how long to wait for an item, 1 to MAX_WAIT_S seconds."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WAIT_S:
        raise BadInput(f"s must be a whole number of seconds from 1 to {MAX_WAIT_S}")
    return int(raw)


def parse_new_item(body: bytes) -> str:
    """The name in a ``POST /items`` body, ``{"name": "..."}``; BadInput for anything else.

    ``body`` is what was read, at most MAX_ITEM_BODY + 1 bytes: one more says
    the body was too large. Nothing is written for a body this refuses.
    """
    if len(body) > MAX_ITEM_BODY:
        raise BadInput(f"the body is larger than {MAX_ITEM_BODY} bytes")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput('the body must be JSON: {"name": "..."}') from None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise BadInput('the body must be {"name": "..."}, with a name that is not empty')
    if len(name) > MAX_NAME or "\x00" in name:
        raise BadInput(f"the name must be at most {MAX_NAME} characters, with no NUL")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): JSON allows it, UTF-8 and PostgreSQL do not
        raise BadInput("the name must be text that UTF-8 can hold") from None
    extra = sorted(set(document) - {"name"})
    if extra:
        raise BadInput(f"the body has fields items do not: {', '.join(extra)}")
    return name


def item_json(item_id: int, name: str, owner: str, created_at: object) -> dict[str, object]:
    """One item as every app answers it."""
    stamp = created_at.isoformat() if hasattr(created_at, "isoformat") else str(created_at)
    return {"id": item_id, "name": name, "owner": owner, "created_at": stamp}


#: Where every app announces an item it stored, in the item's own transaction: PostgreSQL delivers the
#: notification when that commits, and never for a write rolled back. The long polls and event streams
#: (/wait, /events) LISTEN here, so an item stored by any app reaches a client waiting on any other.
CHANNEL = "items"
#: The statement that announces one (a parameter, so the name stays text, never SQL).
ANNOUNCE = "SELECT pg_notify('items', %s)"


def announcement(app: str, item: dict[str, object]) -> str:
    """The notification's payload for ``item`` stored by ``app``: JSON, well under PostgreSQL's 8000 bytes."""
    return json.dumps({"app": app, **item})
