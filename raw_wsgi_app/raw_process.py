"""/process: which process runs the request, and where this module was imported.

A WSGI server imports the app, and every line at the top of its modules, in
each worker after it forks them (gunicorn's default), or once in its master
before the fork (gunicorn's ``preload_app``; uWSGI without ``lazy-apps``,
this stack's default there): WSGI_PRELOAD_APP. Either way a module-level
global is one per worker process from then on, as ``requests_here`` shows:
each worker counts only the requests it ran. docs/tour-stack.md, step 13.
"""

import itertools
import json
import os

#: The process that ran this line: a worker, or the master the workers were forked from.
IMPORTED_IN = os.getpid()
#: A module-level counter: one per process, like every global (next() on a count is atomic under the GIL).
_REQUESTS = itertools.count(1)


def process(environ, start_response):
    """One line of JSON: this process, the one that imported the module, and this process's request count."""
    pid = os.getpid()
    said = {"pid": pid, "imported_in": IMPORTED_IN,
            "imported": "in this process" if pid == IMPORTED_IN else "in its parent, before the fork",
            "requests_here": next(_REQUESTS)}
    body = (json.dumps(said) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
