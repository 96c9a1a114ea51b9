"""A WSGI server by hand, standard library only: the other side of raw_app.py's contract, to read, not to deploy.

    python tiny_server.py raw_app:application 8099      # serves on 127.0.0.1:8099, one request at a time

It does what gunicorn, uWSGI, Granian and Waitress each do for a request,
and no more: read the request line and headers from the socket, build the
environ, call the app, send the status and headers with the first body
bytes, send the body as the app's iterable gives it, and call close(). One
request per connection (HTTP/1.0's way: the end of the body is the end of
the connection), one at a time, no timeouts, no limits: a real server adds
those, and workers, and a parser that refuses what it should. It passes
``wsgiref.validate``'s checks of a server (tests/test_tiny_server.py), and
docs/tour-wire.md step 16 runs the raw app under it.
"""

import importlib
import socket
import sys
import traceback
from urllib.parse import unquote


def environ_of(request, client, port):
    """The environ of one request: CGI's variables, the headers as HTTP_*, and the wsgi.* keys."""
    method, target, protocol = request.readline().decode("latin-1").split()
    path, _, query = target.partition("?")
    # PATH_INFO is the path %-decoded (into a str of latin-1, byte for byte); QUERY_STRING stays as it came.
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": unquote(path, "latin-1"),
               "QUERY_STRING": query,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port), "SERVER_PROTOCOL": protocol,
               "SERVER_SOFTWARE": "tiny_server", "REMOTE_ADDR": client[0],
               "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": request, "wsgi.errors": sys.stderr,
               "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}
    while (line := request.readline().decode("latin-1").rstrip("\r\n")):
        name, _, value = line.partition(":")
        key = name.strip().upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        # A header sent twice is one key, its values joined with commas (as HTTP allows).
        environ[key] = f"{environ[key]},{value.strip()}" if key in environ else value.strip()
    return environ


def serve_one(app, connection, client, port):
    """One request on ``connection``: call the app, send what it returns, call close()."""
    request, response = connection.makefile("rb"), connection.makefile("wb")
    try:
        environ = environ_of(request, client, port)
    except ValueError:  # not a request line of three parts
        response.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        response.close()
        return
    started, sent = [], []

    def write(data):
        """PEP 3333's write(): the status and headers go out before the first bytes of the body."""
        if not sent:
            status, headers = started[-1]
            head = f"HTTP/1.0 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
            response.write((head + "Connection: close\r\n\r\n").encode("latin-1"))
            sent.append(True)
        response.write(data)
        response.flush()

    def start_response(status, headers, exc_info=None):
        if exc_info and sent:
            raise exc_info[1].with_traceback(exc_info[2])  # too late to change the status: the PEP says re-raise
        if started and not exc_info:
            raise AssertionError("start_response called twice without exc_info")
        started.append((status, headers))  # nothing is sent yet: a later call with exc_info replaces it
        return write

    try:
        body = app(environ, start_response)
        try:
            for chunk in body:
                if chunk:
                    write(chunk)
            if not sent:
                write(b"")  # an empty body: the status and headers still go out
        finally:
            if hasattr(body, "close"):
                body.close()
    except Exception:
        # The app's error, or a body that is not bytes: to the server's log, as every server does, and a 500
        # if nothing has gone out yet. Once it has, all that is left is to close the connection.
        traceback.print_exc()
        if not sent:
            response.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    response.close()


def serve(app, port):
    with socket.create_server(("127.0.0.1", port)) as listener:
        print(f"tiny_server: serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        while True:
            connection, client = listener.accept()
            with connection:
                serve_one(app, connection, client, port)


if __name__ == "__main__":
    module, _, name = sys.argv[1].partition(":")
    sys.path.insert(0, ".")
    serve(getattr(importlib.import_module(module), name), int(sys.argv[2]))
