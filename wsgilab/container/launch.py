"""Start one lab app under the WSGI server its service is set to use.

Every app container runs ``python -m wsgilab.container.launch``, and so does the native
test tier. It reads ``WSGI_SERVER`` (``gunicorn``, ``uwsgi``, ``granian`` or
``waitress``; or ``uvicorn``, an ASGI server, for the app's ASGI side), fills
in the settings that the servers' config files (``gunicorn.conf.py``,
``uwsgi.ini``, ``granian.conf.py``, ``waitress.conf.py``,
``uvicorn.conf.py``) all read from the environment, and then *replaces
itself* with the server (``exec``), so the server gets the signals Docker
sends and nothing sits between them.

The defaults and the checks are the settings table's (``wsgilab.settings``),
so every server gets the same ones, a comparison between them is fair, and a
default changes in one place.

Environment (all optional but ``WSGI_APP`` and ``SCRIPT_NAME``):

``WSGI_SERVER``   ``gunicorn`` (default), ``uwsgi``, ``granian`` or ``waitress`` (compose sets it
                  from ``<APP>_SERVER``)
``WSGI_APP``      the WSGI callable, ``module:name`` (compose sets it from ``<APP>_WSGI_APP``)
``ASGI_APP``      the ASGI callable an ASGI server imports instead (compose sets it from ``<APP>_ASGI_APP``)
``SCRIPT_NAME``   the URL prefix nginx routes to this app (e.g. ``/django``)
``WSGI_PROTOCOL`` ``http`` or ``uwsgi``; default the server's own (compose sets it from ``<APP>_PROTOCOL``)
``WSGI_INTERFACE`` ``wsgi`` or ``asgi``; default the server's own (compose sets it from ``<APP>_INTERFACE``)
``WSGI_BIND``     ``host:port``; default ``0.0.0.0:8000`` for HTTP (gunicorn, Granian and Waitress)
                  or ``0.0.0.0:3031`` for the uwsgi protocol (uWSGI)
``WSGI_WORKERS``, ``WSGI_THREADS``, ``WSGI_TIMEOUT``, ``WSGI_BACKLOG``
                  as the settings table says (docs/settings.md)
``WSGI_CONFIG_DIR`` where the servers' config files are; default /etc/wsgi-lab
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from wsgilab.container.listen_address import bind_in, protocol_in, server_in
from wsgilab.settings import SETTINGS, SettingError, check_value, interface_of


#: Granian refuses a smaller backlog (its CLI: --backlog x>=128).
GRANIAN_LEAST_BACKLOG = 128

#: The servers run by a module of ours that reads a config file of the same name (they have none of their own).
_MODULE_RUN = {"granian": "wsgilab.container.granian_main", "waitress": "wsgilab.container.waitress_main",
               "uvicorn": "wsgilab.container.uvicorn_main"}

_SCRIPT_NAME = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


class LaunchError(Exception):
    """The environment does not describe a server this launcher can start."""


def usable_cpus() -> int:
    """Count the CPUs this process may run on (a container's cpuset, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _setting(env: Mapping[str, str], name: str, default: str = "") -> str:
    """The value of the table's setting ``name`` in ``env``, checked, or its default."""
    try:
        return SETTINGS[name].value(env.get(name, "") or default)
    except SettingError as error:
        raise LaunchError(str(error)) from None


#: What a replica's name may hold: it goes into log lines as it is (uWSGI's log-format pastes it in).
_REPLICA = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def replica_name(env: Mapping[str, str]) -> str:
    """This replica's name: WSGILAB_REPLICA, else the host name; "-" if that is not a safe name."""
    name = env.get("WSGILAB_REPLICA", "") or socket.gethostname()
    return name if _REPLICA.match(name) else "-"


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Return ``env`` completed with every setting the two config files read.

    Raises LaunchError, with a message that names the setting, when a value is
    missing or malformed.
    """
    # Compose hands each app its <APP>_SERVER and <APP>_WSGI_APP as these two,
    # checked as the settings table checks those.
    try:
        server = check_value("server", "WSGI_SERVER", server_in(env))
        protocol = protocol_in(env)
        interface = interface_of(server, env.get("WSGI_INTERFACE", ""))
        app = check_value("wsgi_app", "WSGI_APP", env.get("WSGI_APP", ""))
        asgi_app = check_value("wsgi_app", "ASGI_APP", env.get("ASGI_APP", "")) if interface == "asgi" else ""
    except SettingError as error:
        raise LaunchError(str(error)) from None
    if interface == "asgi":
        _refuse_wsgi_only(env, server)
    script_name = env.get("SCRIPT_NAME", "")
    if not _SCRIPT_NAME.match(script_name):
        raise LaunchError(
            f"SCRIPT_NAME must be the URL prefix nginx routes here, like /django, not {script_name!r}"
        )
    # Each server's own default where it is not set: gunicorn imports the app in each worker, uWSGI in its
    # master. uwsgi.ini reads it as lazy-apps, its opposite.
    preload = _setting(env, "WSGI_PRELOAD_APP", "on" if server == "uwsgi" else "off")
    completed = dict(env)
    completed.update(
        WSGI_SERVER=server,
        WSGI_PROTOCOL=protocol,
        WSGI_INTERFACE=interface,
        WSGI_APP=app,
        ASGI_APP=asgi_app,
        SCRIPT_NAME=script_name,
        # The service's name in the hops' log lines: "/django" -> "django".
        WSGILAB_SERVICE=script_name.strip("/"),
        # Which replica of it this is, in the same lines: the container's host
        # name (compose: its short id, as `docker ps` shows it; swarm: what the
        # stack's `hostname:` template makes it), unless WSGILAB_REPLICA names it.
        WSGILAB_REPLICA=replica_name(env),
        WSGI_BIND=bind_in(env, protocol),
        WSGI_WORKERS=_setting(env, "WSGI_WORKERS", str(2 * usable_cpus() + 1)),
        WSGI_THREADS=_setting(env, "WSGI_THREADS"),
        WSGI_TIMEOUT=_setting(env, "WSGI_TIMEOUT"),
        WSGI_BACKLOG=_setting(env, "WSGI_BACKLOG"),
        WSGI_PRELOAD_APP=preload,
        WSGI_LAZY_APPS="false" if preload == "on" else "true",
        WSGILAB_DB_CONNECT_AT_IMPORT=_setting(env, "WSGILAB_DB_CONNECT_AT_IMPORT"),
        WSGILAB_DB_CLOSE_AFTER_FORK=_setting(env, "WSGILAB_DB_CLOSE_AFTER_FORK"),
        # The django app's own, checked here too, so a bad value stops the launcher in the table's words.
        DJANGO_DB_CONNECTIONS=_setting(env, "DJANGO_DB_CONNECTIONS"),
        WSGILAB_TRACING=_setting(env, "WSGILAB_TRACING"),
        WSGILAB_TRACE_FLUSH_MS=_setting(env, "WSGILAB_TRACE_FLUSH_MS"),
        WSGI_CONFIG_DIR=env.get("WSGI_CONFIG_DIR", "") or "/etc/wsgi-lab",
        # This interpreter, as its virtualenv names it: uWSGI re-executes it on a reload.
        WSGI_PYTHON=sys.executable,
        # The app's folder goes on sys.path in both servers (gunicorn `chdir`,
        # uWSGI `pythonpath`): the launcher is started from there.
        WSGI_APP_DIR=env.get("WSGI_APP_DIR", "") or os.getcwd(),
    )
    if server == "granian" and int(completed["WSGI_BACKLOG"]) < GRANIAN_LEAST_BACKLOG:
        raise LaunchError(f"WSGI_BACKLOG must be at least {GRANIAN_LEAST_BACKLOG} on Granian (it refuses less), "
                          f"not {completed['WSGI_BACKLOG']}")
    return completed


def _refuse_wsgi_only(env: Mapping[str, str], server: str) -> None:
    """LaunchError for what the ASGI side cannot honour: WSGI middleware, OTel's WSGI tracing, Django's kept conns."""
    if env.get("WSGI_MIDDLEWARE", ""):
        raise LaunchError(f"WSGI_MIDDLEWARE is WSGI middleware, and {server} serves the app's ASGI side: "
                          "unset it (<APP>_WSGI_MIDDLEWARE) or choose a WSGI server")
    if env.get("WSGILAB_TRACING", "") == "otel":
        raise LaunchError(f"WSGILAB_TRACING=otel instruments the WSGI side only; on {server} use on or off")
    if env.get("DJANGO_DB_CONNECTIONS", "") == "persistent":
        # Django closes a request's old connections from request_started and request_finished, in whichever
        # thread runs them; under ASGI that is not the thread that opened them, and connections pile up.
        raise LaunchError(f"DJANGO_DB_CONNECTIONS=persistent on {server}, which serves the app's ASGI side: "
                          "Django's docs say persistent connections should be disabled under ASGI; "
                          "use per-request or pool")


def concurrency(env: Mapping[str, str]) -> str:
    """How the server runs requests at once, in words: Waitress has one process, its threads the others' product."""
    if env.get("WSGI_INTERFACE") == "asgi":
        return f"{env['WSGI_WORKERS']} workers x 1 event loop"
    if env["WSGI_SERVER"] == "waitress":
        return f"1 process x {int(env['WSGI_WORKERS']) * int(env['WSGI_THREADS'])} threads"
    return f"{env['WSGI_WORKERS']} workers x {env['WSGI_THREADS']} threads"


def server_command(env: Mapping[str, str]) -> list[str]:
    """Return the argv that starts the chosen server with the lab's config file."""
    config_dir = env["WSGI_CONFIG_DIR"]
    server = env["WSGI_SERVER"]
    if server == "gunicorn":
        config = os.path.join(config_dir, "gunicorn.conf.py")
        argv = [sys.executable, "-m", "gunicorn", "--config", config]
    elif server in _MODULE_RUN:
        config = os.path.join(config_dir, f"{server}.conf.py")
        if importlib.util.find_spec(server) is None:
            raise LaunchError(f"WSGI_SERVER={server} but {server} is not installed for this Python "
                              f"(pip install {server}; requirements/servers.txt pins it)")
        argv = [sys.executable, "-m", _MODULE_RUN[server], "--config", config]
    else:
        config = os.path.join(config_dir, "uwsgi.ini")
        if importlib.util.find_spec("pyuwsgi") is None:
            raise LaunchError("WSGI_SERVER=uwsgi but uWSGI is not installed for this Python (pip install pyuwsgi)")
        # uWSGI reads `listen` while it parses the file, before it expands
        # $(VARIABLES) there, so this one setting comes on the command line.
        argv = [sys.executable, "-m", "wsgilab.container.uwsgi_main", "--ini", config, "--listen", env["WSGI_BACKLOG"]]
    if not os.path.isfile(config):
        raise LaunchError(f"no {os.path.basename(config)} in WSGI_CONFIG_DIR={config_dir!r}")
    return argv


def say(env: Mapping[str, str], message: str, level: str = "info") -> None:
    """Write the launcher's own message as a JSON log line (wsgilab.trace_format: launch-log)."""
    from wsgilab.container.log_lines import log_record  # not at the top: the healthcheck imports this module

    sys.stderr.write(log_record("launch", env.get("SCRIPT_NAME", "").strip("/"), env.get("WSGI_SERVER", ""),
                                message, level=level))
    sys.stderr.flush()


def keep_stdout_for_traces(env: dict[str, str]) -> None:
    """Give the JSON lines written from Python (traces, the app's log) a copy of stdout of their own.

    In the workers ``sys.stdout`` and ``sys.stderr`` log what is printed
    (wsgilab.container.log_lines), and uWSGI's log master takes over file
    descriptors 1 and 2 to encode its messages; lines that are JSON already
    go around both, through WSGILAB_TRACE_FD (kept across uWSGI's reloads by
    its `safe-fd`).
    """
    trace_fd = os.dup(1)
    os.set_inheritable(trace_fd, True)
    env["WSGILAB_TRACE_FD"] = str(trace_fd)


#: The module in an app's folder that creates its tables and seed data (``python -m db_setup``).
DB_SETUP = "db_setup"
#: How long the app's database setup may take before the launcher gives up on it; and how long it first waits for
#: the database to take connections (on Swarm, which has no depends_on, the apps may start before it).
DB_SETUP_TIMEOUT_S = 120
DB_WAIT_S = 120


def wait_for_database(env: Mapping[str, str]) -> None:
    """Wait until the database's host and port take a TCP connection; LaunchError after DB_WAIT_S.

    PostgreSQL's first start (initdb, then db/initdb.d) runs a server on its
    Unix socket only, so its port opens once it is ready for the apps.
    """
    address = (env["WSGILAB_DB_HOST"], int(env.get("WSGILAB_DB_PORT") or 5432))
    deadline, said = time.monotonic() + DB_WAIT_S, False
    while True:
        try:
            socket.create_connection(address, timeout=5).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise LaunchError(f"the database at {address[0]}:{address[1]} took no connection in {DB_WAIT_S} s: "
                                  f"{error}") from None
            if not said:
                say(env, f"waiting for the database at {address[0]}:{address[1]} ({error})")
                said = True
            time.sleep(0.5)


def set_up_database(env: Mapping[str, str]) -> None:
    """Run the app's own database setup (its db_setup.py), where a database is configured; LaunchError if it fails.

    In a process of its own, before the server starts: a connection it opens
    dies with it, and none crosses the server's fork into the workers.
    """
    script = os.path.join(env["WSGI_APP_DIR"], f"{DB_SETUP}.py")
    if not env.get("WSGILAB_DB_HOST") or not os.path.isfile(script):
        return
    wait_for_database(env)
    try:
        done = subprocess.run([sys.executable, "-m", DB_SETUP], cwd=env["WSGI_APP_DIR"], env=dict(env),
                              capture_output=True, text=True, timeout=DB_SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"the database setup ({script}) took more than {DB_SETUP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise LaunchError(f"the database setup ({script}) failed: {last}")


def main() -> None:
    """Validate the environment and exec the server; exit 2 with a reason if it is wrong."""
    try:
        env = server_environment(os.environ)
        argv = server_command(env)
    except LaunchError as error:
        say(os.environ, str(error), level="error")
        sys.exit(2)
    say(env, f"{env['ASGI_APP'] or env['WSGI_APP']} at {env['SCRIPT_NAME']} on {env['WSGI_SERVER']}, "
             f"{env['WSGI_PROTOCOL']} at {env['WSGI_BIND']}, {concurrency(env)}")
    try:
        set_up_database(env)
    except LaunchError as error:
        say(env, str(error), level="error")
        sys.exit(2)
    if env["WSGI_SERVER"] != "uvicorn":  # its workers are spawned, given no descriptor but 0 to 2: stdout it is
        keep_stdout_for_traces(env)
    if env["WSGI_SERVER"] == "uwsgi":
        # uWSGI's JSON log encoder (uwsgi.ini, "Logging") writes as its log master: this process, once exec'd.
        # The lines it prints before that master starts go through a relay (wsgilab.container.uwsgi_main).
        env["WSGILAB_MASTER_PID"] = str(os.getpid())
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
