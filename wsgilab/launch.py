"""Start one lab app under the WSGI server its service is set to use.

Every app container runs ``python -m wsgilab.launch``, and so does the native
test tier. It reads ``WSGI_SERVER`` (``gunicorn`` or ``uwsgi``), fills in the
settings that ``gunicorn.conf.py`` and ``uwsgi.ini`` both read from the
environment, and then *replaces itself* with the server (``exec``), so the
server gets the signals Docker sends and nothing sits between them.

The defaults live here, once, so that both servers get the same ones and a
comparison between them is fair.

Environment (all optional but ``WSGI_APP`` and ``SCRIPT_NAME``):

``WSGI_SERVER``   ``gunicorn`` (default) or ``uwsgi``
``WSGI_APP``      the WSGI callable, ``module:name`` (e.g. ``labsite.wsgi:application``)
``SCRIPT_NAME``   the URL prefix nginx routes to this app (e.g. ``/django``)
``WSGI_BIND``     ``host:port``; default ``0.0.0.0:8000`` (gunicorn, HTTP) or
                  ``0.0.0.0:3031`` (uWSGI, uwsgi protocol)
``WSGI_WORKERS``  worker processes; default 2 x CPUs + 1
``WSGI_THREADS``  threads per worker; default 1 (one request per process)
``WSGI_TIMEOUT``  seconds a request may run before its worker is killed; default 30
``WSGI_BACKLOG``  connections the kernel queues while every worker is busy; default 128
``WSGI_CONFIG_DIR`` where gunicorn.conf.py and uwsgi.ini are; default /etc/wsgi-lab
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping

SERVERS = ("gunicorn", "uwsgi")

#: The port each server listens on unless WSGI_BIND says otherwise. 3031 is
#: uWSGI's customary uwsgi-protocol port; nginx/render-config uses the same two.
DEFAULT_PORTS = {"gunicorn": 8000, "uwsgi": 3031}

_SCRIPT_NAME = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
WSGI_APP_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class LaunchError(Exception):
    """The environment does not describe a server this launcher can start."""


def usable_cpus() -> int:
    """Count the CPUs this process may run on (a container's cpuset, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive_int(env: Mapping[str, str], name: str, default: int) -> str:
    value = env.get(name, "") or str(default)
    if not value.isdigit() or int(value) < 1:
        raise LaunchError(f"{name} must be a whole number of at least 1, not {value!r}")
    return value


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Return ``env`` completed with every setting the two config files read.

    Raises LaunchError, with a message that names the setting, when a value is
    missing or malformed.
    """
    server = env.get("WSGI_SERVER", "") or "gunicorn"
    if server not in SERVERS:
        raise LaunchError(f"WSGI_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")
    app = env.get("WSGI_APP", "")
    if not WSGI_APP_PATTERN.match(app):
        raise LaunchError(f"WSGI_APP must name a callable as module:name, not {app!r}")
    script_name = env.get("SCRIPT_NAME", "")
    if not _SCRIPT_NAME.match(script_name):
        raise LaunchError(
            f"SCRIPT_NAME must be the URL prefix nginx routes here, like /django, not {script_name!r}"
        )
    completed = dict(env)
    completed.update(
        WSGI_SERVER=server,
        WSGI_APP=app,
        SCRIPT_NAME=script_name,
        # The service's name in the hops' log lines: "/django" -> "django".
        WSGILAB_SERVICE=script_name.strip("/"),
        WSGI_BIND=env.get("WSGI_BIND", "") or f"0.0.0.0:{DEFAULT_PORTS[server]}",
        WSGI_WORKERS=_positive_int(env, "WSGI_WORKERS", 2 * usable_cpus() + 1),
        WSGI_THREADS=_positive_int(env, "WSGI_THREADS", 1),
        WSGI_TIMEOUT=_positive_int(env, "WSGI_TIMEOUT", 30),
        WSGI_BACKLOG=_positive_int(env, "WSGI_BACKLOG", 128),
        WSGI_CONFIG_DIR=env.get("WSGI_CONFIG_DIR", "") or "/etc/wsgi-lab",
        # This interpreter, as its virtualenv names it: uWSGI re-executes it on a reload.
        WSGI_PYTHON=sys.executable,
        # The app's folder goes on sys.path in both servers (gunicorn `chdir`,
        # uWSGI `pythonpath`): the launcher is started from there.
        WSGI_APP_DIR=env.get("WSGI_APP_DIR", "") or os.getcwd(),
    )
    return completed


def server_command(env: Mapping[str, str]) -> list[str]:
    """Return the argv that starts the chosen server with the lab's config file."""
    config_dir = env["WSGI_CONFIG_DIR"]
    if env["WSGI_SERVER"] == "gunicorn":
        config = os.path.join(config_dir, "gunicorn.conf.py")
        argv = [sys.executable, "-m", "gunicorn", "--config", config]
    else:
        config = os.path.join(config_dir, "uwsgi.ini")
        # pyuwsgi installs `uwsgi` beside this interpreter.
        here = os.path.join(os.path.dirname(sys.executable), "uwsgi")
        binary = here if os.access(here, os.X_OK) else shutil.which("uwsgi")
        if binary is None:
            raise LaunchError("WSGI_SERVER=uwsgi but no uwsgi command is installed (pip install pyuwsgi)")
        # uWSGI reads `listen` while it parses the file, before it expands
        # $(VARIABLES) there, so this one setting comes on the command line.
        argv = [binary, "--ini", config, "--listen", env["WSGI_BACKLOG"]]
    if not os.path.isfile(config):
        raise LaunchError(f"no {os.path.basename(config)} in WSGI_CONFIG_DIR={config_dir!r}")
    return argv


def main() -> None:
    """Validate the environment and exec the server; exit 2 with a reason if it is wrong."""
    try:
        env = server_environment(os.environ)
        argv = server_command(env)
    except LaunchError as error:
        print(f"wsgilab.launch: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f"wsgilab.launch: {env['WSGI_APP']} at {env['SCRIPT_NAME']} on {env['WSGI_SERVER']}, "
        f"{env['WSGI_BIND']}, {env['WSGI_WORKERS']} workers x {env['WSGI_THREADS']} threads",
        file=sys.stderr,
        flush=True,
    )
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
