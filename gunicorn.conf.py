"""gunicorn settings, one file for all three lab apps.

gunicorn reads this file at start-up (``gunicorn --config gunicorn.conf.py``);
``python -m wsgilab.container.launch`` starts it that way with the WSGI_* variables below
already filled in, so the defaults live in one place for both servers.

Each setting says what it does to a request, and names its twin in uwsgi.ini.
A request's path through gunicorn: the kernel queues the connection (backlog),
a worker accepts it, parses the HTTP request (limit_request_*), calls the app
(timeout watches it), writes the response, and closes or keeps the connection
(keepalive).
"""

import os

# --- Which app ---------------------------------------------------------------

# The WSGI callable every worker imports: wsgilab's HopTrace wrapped around
# the app that <APP>_WSGI_APP names ("module:name": DJANGO_WSGI_APP,
# FLASK_WSGI_APP or RAW_WSGI_APP, which compose hands the container as
# WSGI_APP). Twin: uWSGI `mount`.
wsgi_app = "wsgilab.container.traced_app:application"

# Or the app's ASGI side (WSGI_INTERFACE=asgi, from <APP>_INTERFACE): gunicorn's
# own ASGI worker, one event loop per worker process, runs the ASGI callable
# <APP>_ASGI_APP names, traced (wsgilab.container.asgi_app), so WSGI and ASGI
# can be compared with the server held still. It leaves the path whole and
# puts its `root_path` setting (left empty) in the scope; the entry point
# sets the scope's root_path to SCRIPT_NAME. Twin: uvicorn, all of it.
_asgi = os.environ.get("WSGI_INTERFACE") == "asgi"
if _asgi:
    wsgi_app = "wsgilab.container.asgi_app:application"
    worker_class = "asgi"

# The app's folder, put first on sys.path so `wsgi_app` imports from it.
# Twin: uWSGI `pythonpath`.
chdir = os.environ["WSGI_APP_DIR"]

# gunicorn takes the URL prefix (SCRIPT_NAME) from the SCRIPT_NAME environment
# variable itself: it moves "/django" from the front of PATH_INFO to
# SCRIPT_NAME, and answers a path outside the prefix with an error.
# Twin: uWSGI `manage-script-name`.

# --- Where requests come in --------------------------------------------------

# HTTP on this address; nginx's `proxy_pass` connects here. Only the compose
# network (or loopback, in the native tests) can reach it.
# Twin: uWSGI `socket` (which speaks the uwsgi protocol instead of HTTP).
bind = [os.environ["WSGI_BIND"]]

# What gunicorn speaks there (WSGI_PROTOCOL, from <APP>_PROTOCOL): "http", or
# "uwsgi", uWSGI's binary protocol, behind nginx's uwsgi_pass: the protocol
# changes with the server held still. gunicorn takes a uwsgi packet only from
# the peers uwsgi_allow_ips names (exact addresses, or "*": a CIDR never
# matches; any other peer's request ends in a 500); here the same list as
# FORWARDED_ALLOW_IPS. It builds the environ from the packet's variables
# (nginx/uwsgi_params.conf) but not all of them: REMOTE_ADDR is still
# nginx's address, and SCRIPT_NAME still its own variable. Twin: uWSGI `socket`.
protocol = os.environ["WSGI_PROTOCOL"]
uwsgi_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# How many connections the kernel holds for gunicorn while every worker is
# busy (WSGI_BACKLOG, default 128; Linux holds one more, and caps it at
# net.core.somaxconn). Time spent here is the "queue" segment of a request.
# Past it Linux drops nginx's connection attempts without a word: nginx
# retries, gives up after its connect timeout and answers 504, and gunicorn
# never sees nor logs them. `hoptrace lab full-listen-queue` shows it.
# Twin: uWSGI `listen`.
backlog = int(os.environ["WSGI_BACKLOG"])

# --- Workers -----------------------------------------------------------------

# Worker processes, each running its own copy of the app. With threads = 1
# each takes one request at a time (the "sync" worker), so this is also how
# many requests run at once. Default 2 x CPUs + 1. Twin: uWSGI `processes`.
workers = int(os.environ["WSGI_WORKERS"])

# Threads per worker. Above 1 gunicorn switches to the "gthread" worker class:
# more requests at once per process, sharing its memory and its GIL.
# Twin: uWSGI `threads`.
threads = 1 if _asgi else int(os.environ["WSGI_THREADS"])

# Where the app is imported (WSGI_PRELOAD_APP). False, gunicorn's default:
# each worker imports it after the fork. True: the master imports it once and
# forks the workers from it, so they start at once and share its memory pages
# until they write to them; but a reload (HUP) then keeps the old code, and
# whatever the app opened as it was imported, a database connection say, is
# shared by every worker. post_fork below drops such a connection in each
# worker. `hoptrace lab connection-before-fork` shows both.
# Twin: uWSGI `lazy-apps` (its opposite).
preload_app = os.environ["WSGI_PRELOAD_APP"] == "on"

# Seconds a worker may go silent (for a sync worker: one request) before the
# master ends it (SIGABRT) and starts a new one. A gthread worker (threads
# above 1) is never silent while its main loop runs, whatever its threads do:
# it bounds no request (gunicorn's docs: "not tied to the length of time
# required to handle a single request"). The signal raises SystemExit
# in the view, and the worker answers 500 itself on its way out, so the client
# gets gunicorn's 500, not a 502 from nginx (uWSGI's harakiri SIGKILLs the
# worker instead, and nginx answers 502; the worker-timeout lab shows both).
# Twin: uWSGI `harakiri`.
timeout = int(os.environ["WSGI_TIMEOUT"])

# On SIGTERM (docker compose stop) or a reload, seconds a worker gets to finish
# the requests it holds before it is killed. Keep it under compose's
# stop_grace_period (10 s by default). Twin: uWSGI `worker-reload-mercy`.
graceful_timeout = 8

# Seconds an idle connection is kept open for the next request (gthread
# workers only: a sync worker closes after every response). nginx here opens a
# connection per request (nginx/proxy_http.conf), so this matters only to a
# client that talks to gunicorn directly, or to an nginx with an `upstream`
# keepalive pool: keep it longer than that pool's `keepalive_timeout`, so
# nginx, not gunicorn, closes idle connections and never sends a request down
# a closing one. No twin: the uwsgi protocol has one request per connection,
# so over it gunicorn closes after every response (0). Left at 75, gunicorn's
# gthread keeps a uwsgi connection open for a next request when the client's
# own Connection header asks for keep-alive, and a reader that waits for the
# end (the healthcheck) waits out its timeout instead.
keepalive = 0 if protocol == "uwsgi" else 75

# The worker heartbeat file, on tmpfs: on a container's overlay filesystem a
# slow disk write could make a healthy worker look dead.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# --- Request limits ----------------------------------------------------------

# Longest request line, longest header, and how many headers gunicorn accepts
# before answering 400. Matched to nginx's `large_client_header_buffers 4 8k`,
# so nothing nginx lets through is refused here: a line or a header must fit
# one 8 KiB buffer there. nginx caps the header block at 4 x 8 KiB, which
# bounds the number of headers, so the count here is gunicorn's maximum (its
# default of 100 would turn a request nginx accepted into a 400).
# Twin: uWSGI `buffer-size` (one limit for all the variables together).
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 32768

# --- Proxy trust -------------------------------------------------------------

# Which peers may set X-Forwarded-Proto (and so wsgi.url_scheme). gunicorn
# takes REMOTE_ADDR from the connection whatever this says: behind nginx it is
# nginx's address, and the client's is in X-Forwarded-For (HTTP_X_FORWARDED_FOR)
# for the app to read (Granian and Waitress put it in REMOTE_ADDR: servers.md).
# Only nginx can reach this port in the stack (the app network is internal),
# so compose sets FORWARDED_ALLOW_IPS=*; the default trusts loopback only.
# uWSGI needs no twin: nginx hands it REMOTE_ADDR and the scheme as uwsgi
# variables.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Which headers, from those peers, say the client came over https: the one
# nginx sets. gunicorn's default also believes X-Forwarded-Protocol: ssl and
# X-Forwarded-Ssl: on, which nginx does not set and so passes on from the
# client: a client's X-Forwarded-Ssl: on beside nginx's X-Forwarded-Proto:
# http made gunicorn answer 400 ("Contradictory scheme headers") to anyone
# who sent it (the host-and-proxy-headers lab sends both). Twin: Waitress's
# `trusted_proxy_headers` (waitress.conf.py); uWSGI takes the scheme from
# X-Forwarded-Proto first, which nginx always writes.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# Which environ keys those peers may set with a header of the same name:
# none. gunicorn's default takes SCRIPT_NAME and PATH_INFO headers from them,
# so anything on the app's network could move the app's mount point (a
# SCRIPT_NAME header that is not a prefix of the path is gunicorn's 500).
# nginx never sends them (it drops any header with an underscore,
# `ignore_invalid_headers`), and gunicorn takes SCRIPT_NAME from its own
# environment variable (above). uWSGI has no twin: its variables come only
# in the packet.
forwarder_headers = ""

# --- Logging and process names -----------------------------------------------

# Access and error logs to stdout/stderr, where `docker compose logs` reads them.
accesslog = "-"
errorlog = "-"
loglevel = "info"

# Every line as JSON, for hoptrace: one per request (written by post_request
# below, with the stamps of each step) and one per error-log message. It
# replaces `access_log_format`, which pastes client text in unescaped.
# Twin: uWSGI `log-format`.
logger_class = "wsgilab.container.gunicorn_trace.JsonLogger"

# Server hooks: gunicorn calls these in the worker around every request.
# pre_request stamps the moment a worker picked the request up (the end of
# its time in the queue); post_request, after the body's close(), writes the
# request's line. Twin: uWSGI's `log-format` fields tmicros and micros.
# post_worker_init makes each worker also write a line for a request it
# answers itself, without the app (a 400, a path outside SCRIPT_NAME, an
# app that raised): gunicorn's own warning names no request.
# Not on the ASGI side: the ASGI worker's requests take no stamps (their
# class has fixed slots), so it writes no request line of its own, as
# uvicorn writes none; the ASGI layer's record holds the request.
if not _asgi:
    from wsgilab.container.gunicorn_trace import post_request, post_worker_init, pre_request  # noqa: E402,F401
else:
    accesslog = None

# What Python itself writes in gunicorn's processes, outside gunicorn's
# logger: an uncaught exception's traceback (the master dies that way when
# workers cannot import the app), warnings, what the app logs. Each becomes a
# JSON line too (wsgilab.container.log_lines), so every line the container
# writes parses. on_starting runs in the master; the workers it forks
# inherit it (and wsgilab.container.traced_app, in each worker, makes what
# the app prints a JSON line as well). Twin: uWSGI's log master with its
# `log-encoder`.
def on_starting(server):
    from wsgilab.container.log_lines import install_app_logging, trace_stream

    install_app_logging(trace_stream(), os.environ["SCRIPT_NAME"].strip("/"), "gunicorn")


# In each new worker, before it serves anything: drop the database connections
# the app opened before the fork (with preload_app, in the master), so that
# each worker connects on its own rather than sharing one connection's socket
# with its siblings: two workers' queries on one session read each other's
# answers. gunicorn calls the hook; what it drops is the app's to say (each
# app here lists them with wsgilab.container.database.opened_at_import):
# Django's connections are closed (connections.close_all()), the raw app's
# psycopg pool too, and SQLAlchemy's engine gets a new pool, the old one left
# to the master (engine.dispose(close=False), its docs' recipe for os.fork()).
# Off with WSGILAB_DB_CLOSE_AFTER_FORK=off, for the connection-before-fork
# lab. uWSGI's twin is lazy-apps (no preload), or a uwsgidecorators.postfork
# function of the app's own.
def post_fork(server, worker):
    from wsgilab.container.database import drop_inherited

    dropped = drop_inherited()
    if dropped:
        server.log.info("post_fork: worker %s dropped the database connection the app opened before the fork "
                        "(backend pid %s)", worker.pid, ", ".join(map(str, dropped)))


# Shows as "gunicorn: worker [wsgi-lab /django]" in `ps`.
proc_name = "wsgi-lab " + os.environ["SCRIPT_NAME"]

# gunicorn 25+ opens a control socket for `gunicornc` by default. The lab does
# not use it, and three gunicorns on one host (the native tests) would fight
# over its path.
control_socket_disable = True
