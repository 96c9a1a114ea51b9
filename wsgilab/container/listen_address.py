"""Where an app's server listens and in which protocol, from the container's environment.

The launcher binds there and the healthcheck asks there. It is kept apart
from launch.py, which imports the whole settings table: Docker runs the
healthcheck every two seconds, and importing only this costs it about 50 ms
of CPU less a check (docs/findings.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from wsgilab.setting_values import PROTOCOLS, protocol_of

#: The port a server listens on unless WSGI_BIND says otherwise, by the protocol it speaks: 8000 for HTTP, and
#: 3031, uWSGI's customary uwsgi-protocol port; nginx/render-config uses the same two.
PROTOCOL_PORTS = {"http": 8000, "uwsgi": 3031}
#: The same for each server speaking its own protocol (what the labs reach around nginx).
DEFAULT_PORTS = {server: PROTOCOL_PORTS[spoken[0]] for server, spoken in PROTOCOLS.items()}
#: The server an app runs on when WSGI_SERVER is empty.
DEFAULT_SERVER = "gunicorn"


def server_in(env: Mapping[str, str]) -> str:
    """The server ``env`` names (WSGI_SERVER), the default where it is empty; not checked."""
    return env.get("WSGI_SERVER", "") or DEFAULT_SERVER


def protocol_in(env: Mapping[str, str]) -> str:
    """The protocol the server speaks to nginx: WSGI_PROTOCOL, or the server's own where empty (SettingError,
    a ValueError, when the server does not speak it; KeyError for a server this stack does not run)."""
    return protocol_of(server_in(env), env.get("WSGI_PROTOCOL", ""))


def bind_in(env: Mapping[str, str], protocol: str) -> str:
    """The address the server listens at: WSGI_BIND, or every address at ``protocol``'s port."""
    return env.get("WSGI_BIND", "") or f"0.0.0.0:{PROTOCOL_PORTS[protocol]}"
