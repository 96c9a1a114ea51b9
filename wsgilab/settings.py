"""The settings table: every setting a user (or a lab) can change, declared once.

Like gunicorn's own ``config.py``, each setting is one entry: its name (as
``.env`` and ``docker-compose.yml`` spell it), its default, how a value is
checked, what it does *to a request*, and its twin on each server and in
nginx. Everything else reads it or is tested against it:

- ``wsgilab.container.launch`` takes its defaults and validators;
- the labs' stack control (``wsgilab.labs.control``) takes the settings a
  lab may change, and checks them the same way;
- ``nginx/render-config`` is shell (the nginx image has no Python), so
  tests/test_settings.py checks that its defaults and refusals agree;
- ``.env`` and ``docker-compose.yml`` are checked against it by the same
  tests, and ``docs/settings.md`` is generated from it
  (``python -m wsgilab.settings > docs/settings.md``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# Re-exported: the launcher, the labs and scripts/swarm check values through this module.
from wsgilab.setting_values import (ASGI_SERVERS, INTERFACES, PROTOCOLS, SERVERS, SettingError,  # noqa: F401
                                    check_value, interface_of, protocol_of)


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read, its default, and what it does to a request."""

    name: str
    #: The default as compose and the launcher apply it; "" where it is worked out at start (``default_text``).
    default: str
    #: How a value is checked: count, seconds, millis, log_ms, statement_ms, db_connections, pool, server,
    #: wsgi_app, middleware, port, gid, host_names, tw_reuse, a choice of words (setting_values), or text.
    kind: str
    #: What it does to a request, for the docs.
    does: str
    #: Which containers read it: "app" (the app servers), "nginx", "compose" (compose itself), or "swarm"
    #: (scripts/swarm, through scripts/swarm.yml).
    read_by: str
    #: Its twins: the gunicorn settings, uWSGI options, Granian and Waitress arguments (granian.conf.py,
    #: waitress.conf.py) and nginx directives it becomes, ", "-separated; "none: ..." says what a server does
    #: where it has no twin.
    gunicorn: str = ""
    uwsgi: str = ""
    nginx: str = ""
    granian: str = ""
    waitress: str = ""
    #: The default in words, where it is worked out at start.
    default_text: str = ""
    #: Whether a lab may change it while it runs (``hoptrace lab``).
    lab_may_change: bool = False

    def value(self, raw: str | None) -> str:
        """``raw`` checked, or the default where it is empty or None; SettingError if it is not one this takes."""
        value = raw or self.default
        return check_value(self.kind, self.name, value) if value else ""


APPS = ("django", "flask", "raw")

#: Each app's own WSGI callable, module:name, as its server imports it by default.
APP_CALLABLES = {"django": "labsite.wsgi:application", "flask": "wsgi:app", "raw": "raw_app:application"}
#: Each app's ASGI side, module:name, as an ASGI server (uvicorn) imports it: Django's own, Flask behind asgiref's
#: WSGI-to-ASGI adapter, and the raw app's written by hand.
ASGI_CALLABLES = {"django": "labsite.asgi:application", "flask": "asgi:application", "raw": "raw_asgi:application"}


def _per_app() -> list[Setting]:
    found = []
    for app in APPS:
        upper = app.upper()
        found.append(Setting(
            f"{upper}_SERVER", "gunicorn", "server", f"the server the {app} app runs under, and so how nginx "
            "speaks to it: HTTP (proxy_pass) to gunicorn, Granian and Waitress, the uwsgi protocol (uwsgi_pass) to "
            "uWSGI; `uvicorn` serves the app's ASGI side (<APP>_ASGI_APP) instead, over HTTP (docs/asgi.md)", "app",
            nginx="proxy_pass, uwsgi_pass"))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_PROTOCOL", "", "protocol", f"how nginx and the {app} app's server speak: `http` "
            "(proxy_pass) or `uwsgi` (uwsgi_pass), so the protocol can change with the server held still: "
            "gunicorn speaks both; uWSGI speaks uwsgi here, Granian and Waitress HTTP only, and refuse the other",
            "app", gunicorn="protocol", nginx="proxy_pass, uwsgi_pass", default_text="the server's own",
            lab_may_change=True))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_WSGI_APP", APP_CALLABLES[app], "wsgi_app",
            f"the callable the {app} app's server imports, module:name (`hoptrace lab import-failure` points "
            "one at code that cannot be imported); traced_app wraps it", "app", gunicorn="wsgi_app",
            uwsgi="mount", granian="target", waitress="none: the app waitress_main imports", lab_may_change=True))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_INTERFACE", "", "interface", f"how the {app} app's server calls it: `wsgi` "
            "(<APP>_WSGI_APP) or `asgi` (<APP>_ASGI_APP), so the interface can change with the server held "
            "still: gunicorn (its ASGI worker) and Granian (asginl) serve both, uvicorn ASGI only, uWSGI and "
            "Waitress WSGI only (docs/asgi.md)", "app", gunicorn="worker_class asgi", granian="interface asginl",
            default_text="the server's own", lab_may_change=True))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_ASGI_APP", ASGI_CALLABLES[app], "wsgi_app",
            f"the ASGI callable the {app} app's server imports on its ASGI side (uvicorn, or <APP>_INTERFACE=asgi), "
            "module:name; asgi_app wraps it (uvicorn.conf.py)", "app"))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_WSGI_MIDDLEWARE", "", "middleware",
            f"your own WSGI middleware around the {app} app: factories as module:name, comma-separated, the "
            "first outermost, from the repository's middleware/ folder (docs/middleware.md); each shows in the "
            "trace", "app", default_text="none", lab_may_change=True))
    for app in APPS:
        found.append(Setting(
            f"{app.upper()}_REPLICAS", "2", "count", f"with scripts/swarm only: how many replicas of the {app} app "
            "Docker Swarm runs; nginx spreads requests over them (`docker compose up --scale` does this on "
            "compose)", "swarm"))
    return found


#: Every setting, in the order the docs list them.
SETTINGS: dict[str, Setting] = {s.name: s for s in [
    *_per_app(),
    Setting("WSGILAB_HTTP_PORT", "8080", "port", "the host port nginx is published on, on 127.0.0.1 only",
            "compose"),
    Setting("WSGILAB_SERVER_NAMES", "localhost 127.0.0.1 [::1]", "host_names",
            "the Host names the stack serves; nginx answers any other with 421 before an app sees it "
            "(Django's ALLOWED_HOSTS gets the same names)", "nginx", nginx="server_name"),
    Setting("WSGI_WORKERS", "", "count", "worker processes per app server: how many requests run at once "
            "(times threads)", "app", gunicorn="workers", uwsgi="processes", granian="workers",
            waitress="none: one process, with WSGI_WORKERS x WSGI_THREADS threads", default_text="2 x CPUs + 1",
            lab_may_change=True),
    Setting("WSGI_THREADS", "1", "count", "threads per worker; above 1 a worker serves that many requests at "
            "once", "app", gunicorn="threads", uwsgi="threads", granian="blocking_threads",
            waitress="threads (times WSGI_WORKERS)", lab_may_change=True),
    Setting("WSGI_TIMEOUT", "30", "seconds", "how long a request may run before its worker is ended and "
            "replaced; on gunicorn a sync worker's only: with WSGI_THREADS above 1 the gthread worker's own loop "
            "keeps telling the master it is alive, and no request is ended; on uWSGI with threads the worker has one deadline, "
            "which any of its requests ending clears, so a slow request is ended only while no other ends beside it",
            "app", gunicorn="timeout",
            uwsgi="harakiri, socket-timeout",
            granian="none: a request runs as long as it runs", waitress="none: a request runs as long as it runs",
            lab_may_change=True),
    Setting("WSGI_BACKLOG", "128", "count", "connections the kernel queues for an app server while every "
            "worker is busy; past it, connection attempts are dropped (Granian takes no fewer than 128)", "app",
            gunicorn="backlog", uwsgi="listen", granian="backlog", waitress="backlog", lab_may_change=True),
    Setting("WSGI_PRELOAD_APP", "", "on_off", "on: the server imports the app once, in its master, and forks the "
            "workers from it (they share its memory pages until they write to them; a worker starts at once); "
            "off: each worker imports it. With it on, a database connection the app opened as it was imported is "
            "shared by every worker, unless a post_fork hook drops it (`hoptrace lab connection-before-fork`)",
            "app", gunicorn="preload_app", uwsgi="lazy-apps (its opposite)",
            granian="none: each worker imports the app", waitress="none: one process imports it",
            default_text="each server's own: off on gunicorn, on on uWSGI", lab_may_change=True),
    Setting("WSGILAB_HEALTHCHECK_INTERVAL", "2", "seconds", "how often Docker runs each app's healthcheck, a "
            "request straight to its server that takes a place in the same listen queue as nginx's; nginx waits "
            "for the first to pass, so a swapped app is served this soon after it starts "
            "(`hoptrace lab full-listen-queue` sets it to 60 to keep it out of the queue it fills)", "compose",
            lab_may_change=True),
    Setting("WSGILAB_TRACING", "on", "tracing", "on: every request traced (HopTrace, the framework's events, the "
            "view's); off: the app served bare, nginx and the server still logging their own line (what tracing "
            "costs is measured against this: bench/); otel: OpenTelemetry's own instrumentation instead, for the "
            "benchmark (its SDK is not in the images: requirements/bench-otel.txt)", "app"),
    Setting("WSGILAB_TRACE_FLUSH_MS", "50", "millis", "how long a worker may hold the trace lines of requests it "
            "has finished before a thread of its own writes them, several in one write() (at most 4 KiB); 0 writes "
            "each line at once. "
            "A worker killed with SIGKILL loses the lines it held: at most this long's worth "
            "(wsgilab/container/trace_writer.py)", "app"),
    Setting("WSGILAB_TRACE_SAMPLE", "100", "percent", "the share of requests, in per cent (0 to 100, at most 2 "
            "decimals), whose trace the apps record, where the trace starts at nginx: nginx picks them at random "
            "and sends W3C's sampled flag on in `traceparent`. The others are served unwrapped: no WSGI, framework, "
            "view or query events, no queue time, no Server-Timing; nginx logs them, gunicorn and uWSGI too. A "
            "caller's own traceparent keeps its flag, 01 or 00. Keep 100 for the labs and the tour, which read "
            "every request's trace (docs/performance-sampling.md)", "nginx",
            nginx="split_clients on $request_id (trace_sampling.conf)", lab_may_change=True),
    Setting("NGINX_CONNECT_TIMEOUT", "5", "seconds", "how long nginx tries to connect to an app server before "
            "it answers 504 (a full listen queue ends here)", "nginx",
            nginx="proxy_connect_timeout, uwsgi_connect_timeout", lab_may_change=True),
    Setting("NGINX_READ_TIMEOUT", "60", "seconds", "how long nginx waits for an app server to send more "
            "before it answers 504", "nginx", nginx="proxy_read_timeout, uwsgi_read_timeout",
            lab_may_change=True),
    Setting("NGINX_REQUEST_BUFFERING", "on", "on_off", "whether nginx reads a request's whole body before it "
            "hands the request on (on), so a slow upload never holds a worker, or passes the body on as it comes "
            "(off): to gunicorn a chunked body then goes on chunked, with no CONTENT_LENGTH, and only an app that "
            "reads wsgi.input to its end (wsgi.input_terminated) gets it; to uWSGI nginx buffers a chunked body "
            "either way (the uwsgi protocol has no chunks)", "nginx",
            nginx="proxy_request_buffering, uwsgi_request_buffering", lab_may_change=True),
    Setting("NGINX_UPSTREAM_KEEPALIVE", "0", "pool", "idle connections nginx keeps open to each app on an HTTP "
            "server (gunicorn, Granian, Waitress) for its next requests; 0 opens one per request and looks the app's "
            "address up each time, so a recreated container is found and a stopped one is a 502 at once. Above 0, "
            "nginx 1.27.3 and later (the image's) look the name up again every second: recreated and added "
            "containers are found, and a "
            "stopped app is a 502 from the next look-up on (a request in the second before it waits "
            "NGINX_CONNECT_TIMEOUT and ends 504); an older nginx looks it up once, at start. On gunicorn it "
            "pays only with the gthread worker (WSGI_THREADS above 1: a sync worker closes every connection); nginx "
            "keeps no connection to uWSGI (its uwsgi module has no keep-alive)", "nginx",
            nginx="upstream { keepalive }, server resolve", lab_may_change=True),
    Setting("NGINX_TCP_TW_REUSE", "1", "tw_reuse", "whether nginx may reuse, for a new connection to an app "
            "server, a local port whose last connection is still in TIME_WAIT: nginx opens a connection per "
            "request and closes it first, so under load tens of thousands of its ports sit in TIME_WAIT for "
            "60 s; 1 reuses them safely (TCP timestamps tell the old connection's packets apart), 2 only on "
            "loopback (the kernel's default, which a bridge network is not), 0 never", "compose",
            nginx="sysctls: net.ipv4.tcp_tw_reuse"),
    Setting("DJANGO_SECRET_KEY", "", "text", "Django's secret key; empty means an insecure development key, "
            "with a warning on every start", "app", default_text="a development key, with a warning"),
    Setting("WSGILAB_DB_PASSWORD", "", "text", "the password of the apps' database role (`wsgilab`); empty: "
            "one made at random on the first start, kept in a volume. PostgreSQL keeps the password it was "
            "created with: a different one later stops the db-secrets service with a message "
            "(`docker compose down --volumes` starts afresh). Only db-secrets reads it: the apps read the "
            "password from a file (docs/database.md)", "compose", default_text="random, made once"),
    Setting("WSGILAB_JAEGER_PORT", "16686", "port", "with `--profile otel` only: the host port Jaeger's UI is "
            "published on, on 127.0.0.1 only", "compose"),
    Setting("WSGILAB_VIEWER_PORT", "8081", "port", "with `--profile viewer` only: the host port `hoptrace web` "
            "is published on, on 127.0.0.1 only", "compose"),
    Setting("DOCKER_GID", "0", "gid", "with `--profile otel` or `viewer` only: the group that owns the "
            "Docker socket on the host (`stat -c %g /var/run/docker.sock`), which the exporter joins to read the "
            "stack's logs through Docker's API; 0 fits where the socket belongs to root's group", "compose"),
    Setting("WSGILAB_SWARM_PUBLISH", "loopback", "publish", "with scripts/swarm only: where nginx's port is "
            "published on each node: `loopback` (127.0.0.1 only, through a docker_gwbridge network that "
            "scripts/swarm creates before it starts a swarm) or `all` (every address of the node, for a load "
            "balancer in front of several machines)", "swarm"),
    Setting("WSGILAB_IMAGES", "wsgi-lab", "text", "where the stack's four images are named: "
            "WSGILAB_IMAGES/django:WSGILAB_IMAGE_TAG and so on; a registry's path (`registry.example.com/you/"
            "wsgi-lab`) to push them there for several machines (docs/swarm.md)", "compose"),
    Setting("WSGILAB_IMAGE_TAG", "local", "text", "the tag of the stack's four images; a new one is a new "
            "release, which Swarm rolls out replica by replica", "compose"),
    Setting("PYTHON_IMAGE", "python:3.13-slim", "text", "the base image of the three app images", "compose"),
    Setting("NGINX_IMAGE", "nginx:stable", "text", "the base image of the nginx image", "compose"),
    Setting("WSGILAB_DB_LOG_MIN_MS", "0", "log_ms", "PostgreSQL logs each statement that runs at least this "
            "long, with its time and its parse, bind and execute steps (0: every statement, -1: none); a "
            "traced request's statements begin with their traceparent, so `hoptrace show` joins each line to its "
            "query (docs/database.md). Never a parameter's value. With -1 the apps send no such comment: nothing "
            "would join it, and it costs each statement psycopg's caches", "app"),
    Setting("WSGILAB_DB_STATEMENT_TIMEOUT_MS", "20000", "statement_ms", "PostgreSQL cancels an app's statement "
            "that runs longer than this (`statement_timeout`; 0: never), and the app answers 503 with its worker "
            "kept. Below WSGI_TIMEOUT, so a slow query ends here, not in a killed worker whose query goes on "
            "running in the database (`hoptrace lab slow-query`)", "app", lab_may_change=True),
    Setting("WSGILAB_DB_MAX_CONNECTIONS", "100", "db_connections", "how many sessions PostgreSQL allows at once "
            "(`max_connections`), 3 of them kept for a superuser: the apps' role gets the rest. Every app worker "
            "thread may hold one, so keep apps x replicas x WSGI_WORKERS x WSGI_THREADS below it; past it a new "
            "connection is refused, and the request that wanted it is a 503 (`hoptrace lab too-many-clients`). "
            "Changing it restarts the database", "compose", lab_may_change=True),
    Setting("WSGILAB_DB_CONNECT_AT_IMPORT", "off", "on_off", "on: each app connects to the database as it is "
            "imported and uses that connection in any process, the mistake `hoptrace lab connection-before-fork` "
            "shows; off: each worker connects when a request first needs the database", "app", lab_may_change=True),
    Setting("WSGILAB_DB_CLOSE_AFTER_FORK", "on", "on_off", "on: gunicorn's post_fork hook (gunicorn.conf.py) has "
            "each new worker drop what the app opened at import before it serves (closed; SQLAlchemy's pool left to "
            "the master); off: with the two settings above on, the workers share it (uWSGI: WSGI_PRELOAD_APP=off)",
            "app", gunicorn="post_fork", lab_may_change=True),
    Setting("DJANGO_DB_CONNECTIONS", "per-request", "django_connections", "how Django holds its database "
            "connections: per-request (CONN_MAX_AGE 0, its default: one for each request that queries), persistent "
            "(CONN_MAX_AGE 600, CONN_HEALTH_CHECKS: one per worker thread, kept), or pool (its psycopg pool, per "
            "worker process, up to WSGI_THREADS); persistent is refused on the app's ASGI side, as Django's docs "
            "ask", "app", lab_may_change=True),
    Setting("POSTGRES_IMAGE", "postgres:17", "text", "the database's image (scripts/offline-images builds a "
            "stand-in of the same major version from Debian's packages)", "compose"),
]}

#: The settings a lab may change on a running stack.
LAB_SETTINGS = {name: s for name, s in SETTINGS.items() if s.lab_may_change}

#: What a stack that reads every request's trace (the tour's, the test stacks) is brought up with, whatever .env or
#: the shell say: below 100, a request nginx did not sample has no app-side trace for a lab or a step to read.
EVERY_TRACE = {"WSGILAB_TRACE_SAMPLE": "100"}


def _twin_words(twin: str) -> str:
    """A twin as the table shows it: each name in backticks; "none: ..." (no twin, what is done instead) as words."""
    if not twin:
        return "-"
    if twin.startswith("none"):
        return twin
    return ", ".join(f"`{name}`" for name in twin.split(", "))


def markdown() -> str:
    """docs/settings.md: the table, generated from ``SETTINGS``."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from wsgilab/settings.py by `python -m wsgilab.settings > docs/settings.md`;",
        "     tests/test_settings.py fails when this page is out of date. -->",
        "",
        "Set them in `.env`, or in the shell for one command (`DJANGO_SERVER=uwsgi docker compose up -d`);",
        "the shell wins. An empty value means the default. A value a setting does not take stops the",
        "container that reads it, with a message that names the setting.",
        "",
        "| setting | default | what it does to a request | gunicorn | uWSGI | Granian | Waitress | nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in SETTINGS.values():
        default = f"`{s.default}`" if s.default else s.default_text or "(none)"
        twins = [_twin_words(twin) for twin in (s.gunicorn, s.uwsgi, s.granian, s.waitress, s.nginx)]
        lines.append(f"| `{s.name}` | {default} | {s.does} | {' | '.join(twins)} |")
    lines += ["", "A lab may change these while it runs, and puts them back after: "
              + ", ".join(f"`{name}`" for name in LAB_SETTINGS) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
