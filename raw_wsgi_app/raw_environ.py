"""What the raw app's ``/environ`` shows: a request's environ, each key grouped by who put it there.

A WSGI environ mixes what CGI defined (RFC 3875: the request line split up,
the client, the body's type and length, and a request header per
``HTTP_*`` key), PEP 3333's own ``wsgi.*`` keys, what the server adds of
its own, what a middleware adds on the way in, and, under Granian, the
server process's environment. Standard library only.
"""

import os

#: CGI's meta-variables (RFC 3875), kept by PEP 3333; request headers are CGI's HTTP_* keys.
CGI_KEYS = {"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "PATH_INFO", "PATH_TRANSLATED",
            "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT", "REMOTE_USER", "REQUEST_METHOD",
            "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE"}
#: PEP 3333's own keys: seven every server sets, and the optional wsgi.file_wrapper.
WSGI_KEYS = {"wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors", "wsgi.multithread",
             "wsgi.multiprocess", "wsgi.run_once", "wsgi.file_wrapper"}


#: What /environ shows for a value copied from the process environment.
HIDDEN = "<hidden: from the process environment>"


def grouped(environ):
    """The environ the server built for this request, grouped by who put each key there: what /environ shows.

    ``cgi`` and ``http`` (the request headers) follow CGI's rules, ``wsgi`` is
    PEP 3333's keys, ``server`` what the server (or, over uwsgi, nginx) added
    of its own, ``app`` what a middleware added, ``process`` a variable of the
    server process's environment (Granian copies them all in): its name only,
    as its value may be a secret. Objects are shown by type.
    """
    def shown(value):
        if isinstance(value, (str, bool, int, float, type(None))):
            return value
        if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            return list(value)
        kind, label = (value, "class ") if isinstance(value, type) else (type(value), "")
        module = "" if kind.__module__ == "builtins" else kind.__module__ + "."
        return f"<{label}{module}{kind.__qualname__}>"

    def group(key):
        if key in CGI_KEYS:
            return "cgi"
        if key.startswith("HTTP_"):
            return "http"
        if key in WSGI_KEYS:
            return "wsgi"
        if "." in key and not key.startswith(("wsgi.", "gunicorn.", "uwsgi.")):
            return "app"
        return "process" if key in os.environ else "server"

    groups = {name: {} for name in ("cgi", "http", "wsgi", "server", "app", "process")}
    for key in sorted(environ):
        where = group(key)
        groups[where][key] = HIDDEN if where == "process" else shown(environ[key])
    return groups
