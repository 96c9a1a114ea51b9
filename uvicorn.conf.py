"""uvicorn settings, one file for all three lab apps' ASGI side.

uvicorn has no config file of its own (it takes flags or UVICORN_*
variables), so ``python -m wsgilab.container.uvicorn_main`` reads this one
the way gunicorn reads gunicorn.conf.py: each name below is a keyword
argument of ``uvicorn.run(...)``, filled in from the WSGI_* variables the
launcher completed, so the servers get the same defaults.

Each setting says what it does to a request, and names its twin in
gunicorn.conf.py. A request's path through uvicorn: the kernel queues the
connection (backlog); a worker process's event loop accepts it, parses the
HTTP request (h11) and starts a task that awaits ``app(scope, receive,
send)``; while that task awaits (a sleep, a slow client, the database
through an async driver), the same loop goes on with every other
connection it holds. A sync view is the app's affair: Django runs it on a
thread (asgiref's sync_to_async), and the loop awaits that thread while it
serves the others.
"""

import os

# --- Which app ---------------------------------------------------------------

# The ASGI callable each worker imports: AsgiHopTrace around the app that
# ASGI_APP names, under the URL prefix (wsgilab.container.asgi_app).
# Twin: gunicorn `wsgi_app`.
app = "wsgilab.container.asgi_app:application"

# The app's folder, put on sys.path so ASGI_APP imports from it.
# Twin: gunicorn `chdir`.
app_dir = os.environ["WSGI_APP_DIR"]

# Left empty on purpose: uvicorn puts its root_path in front of the path the
# client sent, and nginx sends the whole path (/raw/...). The app's entry
# point sets the scope's root_path to SCRIPT_NAME instead.
# Twin: gunicorn's SCRIPT_NAME variable.
root_path = ""

# The lifespan messages (startup, shutdown) go to apps that answer them (the
# raw app does); "auto" carries on where an app refuses them (Django's does).
lifespan = "auto"

# --- Where requests come in --------------------------------------------------

# HTTP/1.1 on this address (nginx's `proxy_pass`), parsed by h11, the pure
# Python parser (httptools, the faster C one, is not installed).
# Twin: gunicorn `bind`.
host, _, _port = os.environ["WSGI_BIND"].rpartition(":")
port = int(_port)
http = "h11"
# Websockets through wsproto, the pure-Python websocket library on h11
# (nginx passes the upgrade on: nginx.conf). An app that does not accept
# one (Flask's adapter refuses them) closes it, and the client gets a 403.
ws = "wsproto"

# How many connections the kernel holds while uvicorn is not accepting
# (WSGI_BACKLOG). Twin: gunicorn `backlog`.
backlog = int(os.environ["WSGI_BACKLOG"])

# How long an idle connection from nginx stays open for the next request;
# uvicorn's own default is 5 s. Longer than nginx's keepalive pool's idle
# time, as gunicorn's. Twin: gunicorn `keepalive`.
timeout_keep_alive = 75

# No cap on the connections and tasks a worker holds at once (uvicorn's
# default): past a `limit_concurrency` it would answer 503 at once.
# No twin: gunicorn's sync worker accepts only when it is free.
limit_concurrency = None

# --- Workers -----------------------------------------------------------------

# Worker processes, each with one event loop and its own import of the app;
# with more than one, this process supervises them and starts a new one
# when one dies. WSGI_THREADS is not read: a loop has no threads to give.
# Twin: gunicorn `workers`.
workers = int(os.environ["WSGI_WORKERS"])

# No twin for gunicorn's `timeout`: uvicorn never ends a request that runs
# long. On SIGTERM (docker compose stop), seconds the requests in flight get
# to finish before their tasks are cancelled. Twin: gunicorn
# `graceful_timeout`.
timeout_graceful_shutdown = 8

# --- Proxy trust -------------------------------------------------------------

# Take the client's address and the scheme from X-Forwarded-For and
# X-Forwarded-Proto when the peer is one FORWARDED_ALLOW_IPS trusts (the
# variable gunicorn reads: "*" in compose, where only nginx reaches an app;
# loopback otherwise). Twin: gunicorn `forwarded_allow_ips`.
proxy_headers = True
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "") or "127.0.0.1,::1"

# --- Logging -----------------------------------------------------------------

# uvicorn's own messages as JSON (wsgilab.container.uvicorn_trace). No
# access log: uvicorn writes it when the response starts, with no request
# id; the ASGI layer's trace line says more. Twin: gunicorn `logger_class`.
access_log = False
log_config = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "wsgilab.container.uvicorn_trace.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "loggers": {"uvicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}
