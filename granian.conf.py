"""Granian settings, one file for all three lab apps.

Granian has no config file of its own (it takes flags or GRANIAN_* variables),
so ``python -m wsgilab.container.granian_main`` reads this one the way
gunicorn reads gunicorn.conf.py: each name below is a keyword argument of
Granian's own Python API (``granian.Granian(...)``), filled in from the WSGI_*
variables the launcher completed, so the three servers get the same defaults.

Each setting says what it does to a request, and names its twin in
gunicorn.conf.py. A request's path through Granian: the kernel queues the
connection (backlog); a worker process's Rust runtime accepts it and parses
the HTTP request, up to `backpressure` at once; the WSGI call waits for one
of the worker's blocking threads, runs the app there, and the runtime writes
the response.
"""

import os
from pathlib import Path

# --- Which app ---------------------------------------------------------------

# The WSGI callable each worker imports: HopTrace around the app, behind
# Granian's proxy-headers wrapper (see "Proxy trust" below).
# Twin: gunicorn `wsgi_app`.
target = "wsgilab.container.granian_app:application"
interface = "wsgi"
# Or the app's ASGI side (WSGI_INTERFACE=asgi, from <APP>_INTERFACE): Granian's
# "asginl", ASGI without the lifespan messages, runs the ASGI callable
# <APP>_ASGI_APP names, traced, on each worker's event loop
# (wsgilab.container.granian_asgi). Twin: uvicorn, all of it.
_asgi = os.environ.get("WSGI_INTERFACE") == "asgi"
if _asgi:
    target = "wsgilab.container.granian_asgi:application"
    interface = "asginl"

# The app's folder, put on sys.path so the target imports from it.
# Twin: gunicorn `chdir`.
working_dir = Path(os.environ["WSGI_APP_DIR"])

# The URL prefix nginx routes here ("/django"): Granian moves it from the
# front of PATH_INFO to SCRIPT_NAME. Unlike gunicorn it does not check that a
# path starts with it: it cuts that many characters off whatever comes.
# Twin: gunicorn's SCRIPT_NAME variable.
url_path_prefix = os.environ["SCRIPT_NAME"]

# --- Where requests come in --------------------------------------------------

# HTTP/1.1 on this address (nginx's `proxy_pass`); HTTP/2 is not needed
# behind nginx. Twin: gunicorn `bind`.
address, _, _port = os.environ["WSGI_BIND"].rpartition(":")
port = int(_port)
http = "1"
websockets = False  # a WSGI app cannot take them; Granian would say so at every start

# How many connections the kernel holds while Granian is not accepting
# (WSGI_BACKLOG; Granian takes no fewer than 128). Twin: gunicorn `backlog`.
backlog = int(os.environ["WSGI_BACKLOG"])

# Connections a worker holds at once: a permit taken before accept() and
# kept while the connection is open (an idle keep-alive one too). Granian's
# default, backlog / workers, is far more than its threads: requests past
# them wait inside the worker, in a queue for a thread, not in the kernel's
# listen queue, and that wait is not in Granian's access log. Left at its
# default, so what Granian does out of the box is what is shown.
# No twin: gunicorn's sync worker accepts only when it is free.
backpressure = None

# --- Workers -----------------------------------------------------------------

# Worker processes, each importing the app (there is no preload).
# Twin: gunicorn `workers`.
workers = int(os.environ["WSGI_WORKERS"])

# Threads per worker that run the WSGI app: how many requests a worker runs
# at once. Granian's own default for WSGI is backpressure / 2 (512 with one
# worker); here it is WSGI_THREADS, as for the other servers.
# Twin: gunicorn `threads`.
blocking_threads = 1 if _asgi else int(os.environ["WSGI_THREADS"])  # Granian takes no more for ASGI

# No twin for gunicorn's `timeout`: Granian never ends a request that runs
# long, nor the worker running it. WSGI_TIMEOUT is not read here.

# On SIGTERM (docker compose stop), seconds the workers get to finish what
# they hold before they are killed; Granian's default waits for ever.
# Twin: gunicorn `graceful_timeout`.
workers_kill_timeout = 8

# A worker that dies (killed, or crashed) is started again, as gunicorn's
# master does unasked; one that dies again within 5.5 s of that (an app that
# cannot be imported) stops Granian: "Worker crash loop detected".
respawn_failed_workers = True

# --- Logging -----------------------------------------------------------------

# Granian's own log lines and one access-log line per request, both as JSON
# (wsgilab.container.granian_trace): the access line names the request id
# nginx sent, so hoptrace joins it to the request's other hops. Its dt_ms
# starts when a blocking thread took the request up: the wait for a thread is
# not in it. Twin: gunicorn `logger_class` and its access log.
log_access = True
log_access_format = "%(header{x-request-id})s"
log_dictconfig = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "wsgilab.container.granian_trace.JsonFormatter"},
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "_granian": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "granian.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}
