"""Waitress settings, one file for all three lab apps.

Waitress has no config file of its own (it takes `waitress-serve` flags, or
keyword arguments to ``waitress.serve``), so
``python -m wsgilab.container.waitress_main`` reads this one the way gunicorn
reads gunicorn.conf.py: each name below is one of Waitress's "adjustments"
(``waitress.adjustments.Adjustments``), filled in from the WSGI_* variables
the launcher completed, so the three servers get the same defaults.

Each setting says what it does to a request, and names its twin in
gunicorn.conf.py. A request's path through Waitress: one process, one
thread running an event loop that accepts connections and reads each
request whole (headers and body) before anything else sees it; then a task
queue, from which a pool of threads takes requests and runs the app; the
loop writes the responses out, buffered.
"""

import os

# --- Where requests come in --------------------------------------------------

# HTTP on this address (nginx's `proxy_pass`). Twin: gunicorn `bind`.
listen = os.environ["WSGI_BIND"]

# How many connections the kernel holds while Waitress is not accepting
# (WSGI_BACKLOG). Twin: gunicorn `backlog`.
backlog = int(os.environ["WSGI_BACKLOG"])

# Connections Waitress holds open at once (its default, 100); past it the
# loop stops accepting, and the next connections wait in the kernel's queue.
# No twin: a gunicorn worker accepts only what it can run.
connection_limit = 100

# The URL prefix nginx routes here ("/django"): Waitress moves it from the
# front of PATH_INFO to SCRIPT_NAME.
# Twin: gunicorn's SCRIPT_NAME variable.
url_prefix = os.environ["SCRIPT_NAME"]

# --- Threads -----------------------------------------------------------------

# Waitress has no worker processes: one process runs every request on this
# many threads, sharing one GIL. To run as many requests at once as the other
# servers, it gets WSGI_WORKERS x WSGI_THREADS of them. A request that finds
# every thread busy waits in the task queue, and Waitress logs "Task queue
# depth is N" (logger waitress.queue), its only word on a request.
# Twin: gunicorn `workers` x `threads`.
threads = int(os.environ["WSGI_WORKERS"]) * int(os.environ["WSGI_THREADS"])

# No twin for gunicorn's `timeout`: Waitress never ends a request that runs
# long. WSGI_TIMEOUT is not read here.

# Seconds a connection may sit idle (no request, or a request not read) before
# Waitress closes it. Twin: gunicorn `keepalive`, for an idle connection.
channel_timeout = 120

# --- Buffering ---------------------------------------------------------------

# A request body longer than this (bytes) is spooled to a temporary file
# rather than memory before the app is called; a response longer than
# outbuf_overflow likewise, as the loop sends it. Waitress's defaults.
# No twin: gunicorn reads the body as the app reads wsgi.input, and writes
# the response as the app yields it.
inbuf_overflow = 524288
outbuf_overflow = 1048576

# --- Proxy trust -------------------------------------------------------------

# Which peer may set X-Forwarded-For / X-Forwarded-Proto (and so REMOTE_ADDR
# and wsgi.url_scheme): as for gunicorn, FORWARDED_ALLOW_IPS ("*" in compose,
# where only nginx can reach this port). Waitress takes one address or "*";
# headers from any other peer are removed before the app sees them.
# Twin: gunicorn `forwarded_allow_ips`.
trusted_proxy = "*" if os.environ.get("FORWARDED_ALLOW_IPS") == "*" else "127.0.0.1"
trusted_proxy_count = 1
trusted_proxy_headers = {"x-forwarded-for", "x-forwarded-proto"}
clear_untrusted_proxy_headers = True

# --- What it says ------------------------------------------------------------

# Its Server header, and no traceback in a 500's body.
ident = "waitress"
expose_tracebacks = False
# No access log: Waitress has none. Its own messages go through Python's
# logging, which the app's process writes as JSON (wsgilab.container.log_lines).
