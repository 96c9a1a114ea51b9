"""How a setting's value is checked: one function per kind of value, shared by every reader of the table.

``wsgilab.settings`` declares each setting with a ``kind``; ``check_value``
is what a kind means. A refusal names the setting and what it takes, in
the words the launcher, ``hoptrace lab`` and scripts/swarm all print.
"""

from __future__ import annotations

import re

#: The servers an app can run under (``<APP>_SERVER``): four WSGI servers, then the ASGI ones.
SERVERS = ("gunicorn", "uwsgi", "granian", "waitress", "uvicorn")
#: The servers that call the app's ASGI side (``<APP>_ASGI_APP``) rather than its WSGI callable.
ASGI_SERVERS = ("uvicorn",)
#: The interfaces each calls the app through (``<APP>_INTERFACE``), its own first: gunicorn (its ASGI worker)
#: and Granian (``asginl``) serve both, so WSGI and ASGI can be compared with the server held still.
INTERFACES = {"gunicorn": ("wsgi", "asgi"), "uwsgi": ("wsgi",), "granian": ("wsgi", "asgi"), "waitress": ("wsgi",),
              "uvicorn": ("asgi",)}
#: The protocols each speaks to nginx (``<APP>_PROTOCOL``), its own first: gunicorn 24 and later speaks uwsgi too.
PROTOCOLS = {"gunicorn": ("http", "uwsgi"), "uwsgi": ("uwsgi",), "granian": ("http",), "waitress": ("http",),
             "uvicorn": ("http",)}

class SettingError(ValueError):
    """A setting's value is not one it takes; the message names the setting and what it takes."""


_WSGI_APP = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: A percentage as nginx's split_clients takes it (render-config checks the same): 0 to 100, at most 2 decimals.
_PERCENT = re.compile(r"^(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)$")
_HOST_NAMES = re.compile(r"^[A-Za-z0-9.:_*\[\] -]+$")
#: The kinds a value of which is one of a few words.
_CHOICES = {"on_off": ("on", "off"), "tracing": ("on", "off", "otel"), "publish": ("loopback", "all"),
            "django_connections": ("per-request", "persistent", "pool"),
            "protocol": ("http", "uwsgi"), "interface": ("wsgi", "asgi")}


def check_value(kind: str, name: str, value: str) -> str:
    """``value`` if it is a good ``kind``, else SettingError naming ``name``."""
    if kind in ("count", "seconds"):
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            unit = "whole number of seconds" if kind == "seconds" else "whole number"
            raise SettingError(f"{name} must be a {unit}, at least 1, not {value!r}")
    elif kind in _CHOICES or kind == "server":
        words = SERVERS if kind == "server" else _CHOICES[kind]
        if value not in words:
            raise SettingError(f"{name} must be {', '.join(words[:-1])} or {words[-1]}, not {value!r}")
    elif kind == "wsgi_app":
        if not _WSGI_APP.match(value):
            raise SettingError(f"{name} must name a callable as module:name, not {value!r}")
    elif kind == "middleware":
        if not all(_WSGI_APP.match(part.strip()) for part in value.split(",")):
            raise SettingError(f"{name} must name middleware factories as module:name, separated by commas, "
                               f"not {value!r}")
    elif kind == "port":
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
            raise SettingError(f"{name} must be a TCP port, 1 to 65535, not {value!r}")
    elif kind == "gid":
        if not (value.isascii() and value.isdigit()) or int(value) >= 2**31:
            raise SettingError(f"{name} must be a group id, a whole number from 0, not {value!r}")
    elif kind == "millis":
        if not (value.isascii() and value.isdigit()) or int(value) > 10_000:
            raise SettingError(f"{name} must be a whole number of milliseconds, 0 to 10000, not {value!r}")
    elif kind == "pool":
        if not (value.isascii() and value.isdigit()) or int(value) > 1024:
            raise SettingError(f"{name} must be a whole number of connections, 0 to 1024, not {value!r}")
    elif kind == "log_ms":
        if value != "-1" and not (value.isascii() and value.isdigit() and int(value) <= 60_000):
            raise SettingError(f"{name} must be -1 (off) or a whole number of milliseconds, 0 to 60000, "
                               f"not {value!r}")
    elif kind == "statement_ms":
        if not (value.isascii() and value.isdigit()) or int(value) > 600_000:
            raise SettingError(f"{name} must be a whole number of milliseconds, 0 (no limit) to 600000, "
                               f"not {value!r}")
    elif kind == "db_connections":
        if not (value.isascii() and value.isdigit()) or not 4 <= int(value) <= 10_000:
            raise SettingError(f"{name} must be a whole number of connections, 4 to 10000 (PostgreSQL keeps 3 "
                               f"of them for a superuser), not {value!r}")
    elif kind == "tw_reuse":
        if value not in ("0", "1", "2"):
            raise SettingError(f"{name} must be 0, 1 or 2 (net.ipv4.tcp_tw_reuse), not {value!r}")
    elif kind == "percent":
        if not _PERCENT.fullmatch(value):
            raise SettingError(f"{name} must be a percentage from 0 to 100, with at most 2 decimals, not {value!r}")
    elif kind == "host_names":
        if not _HOST_NAMES.match(value):
            raise SettingError(f"{name} must be host names separated by spaces, not {value!r}")
    return value


def _servers_own(kind: str, table: dict[str, tuple[str, ...]], verb: str, server: str, chosen: str,
                 name: str) -> str:
    """``chosen`` (checked as ``kind``) if ``table`` gives ``server`` it, its first (the server's own) where empty;
    SettingError naming ``name`` and saying what the server ``verb``s otherwise."""
    if not chosen:
        return table[server][0]
    check_value(kind, name, chosen)
    if chosen not in table[server]:
        raise SettingError(f"{name}={chosen}, but {server} {verb} {' and '.join(table[server])} only")
    return chosen


def interface_of(server: str, chosen: str, name: str = "WSGI_INTERFACE") -> str:
    """The interface ``server`` calls the app through: ``chosen`` (checked), or its own where empty; SettingError
    naming ``name`` when the server has no such side."""
    return _servers_own("interface", INTERFACES, "serves", server, chosen, name)


def protocol_of(server: str, chosen: str, name: str = "WSGI_PROTOCOL") -> str:
    """The protocol ``server`` speaks to nginx: ``chosen`` (checked), or its own where empty; SettingError naming
    ``name`` when the server does not speak it."""
    return _servers_own("protocol", PROTOCOLS, "speaks", server, chosen, name)
