"""A WSGI server by hand, standard library only: the other side of raw_app.py's contract, to read, not to deploy.

    python tiny_server.py raw_app:application 8099      # serves on 127.0.0.1:8099, one request at a time

It does the core of what gunicorn, uWSGI, Granian and Waitress each do for a
request: read the request line and headers from the socket, build the
environ, call the app, send the status and headers with the first body
bytes, send the body as the app's iterable gives it, and call close(). What
it leaves out, a real server has: workers or threads, timeouts and limits,
keep-alive (here the end of the response is the end of the connection),
chunked request bodies, no body for HEAD, ``wsgi.file_wrapper``, and a
parser that refuses what it should. It passes ``wsgiref.validate``'s checks
(tests/test_tiny_server.py), and docs/tour-wire.md step 19 runs the raw app
under it.
"""

import importlib
import io
import socket
import sys
import traceback
from urllib.parse import unquote


def environ_of(from_client, client, port):
    """The environ of one request: CGI's variables, the headers as HTTP_*, and the wsgi.* keys."""
    method, target, protocol = from_client.readline().decode("latin-1").split()
    path, _, query = target.partition("?")
    environ = {
        # CGI's variables. PATH_INFO is the path %-decoded, into a str of latin-1 byte for byte;
        # QUERY_STRING stays as it came. No SCRIPT_NAME: the app is mounted at the root.
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": unquote(path, "latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port), "SERVER_PROTOCOL": protocol,
        "SERVER_SOFTWARE": "tiny_server", "REMOTE_ADDR": client[0],
        # WSGI's own keys.
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    while (line := from_client.readline().decode("latin-1").rstrip("\r\n")):
        name, _, value = line.partition(":")
        if "_" in name:
            continue  # dropped, as real servers do, so that X_Forwarded_For cannot pose as X-Forwarded-For
        key = name.strip().upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        # A header sent twice is one key, its values joined with commas (as HTTP allows).
        environ[key] = f"{environ[key]},{value.strip()}" if key in environ else value.strip()
    # The body, and nothing after it: a read to the end of wsgi.input ends where the body does.
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length < 0:
        raise ValueError(f"Content-Length {length}")
    environ["wsgi.input"] = io.BytesIO(from_client.read(length))
    return environ


def serve_one(app, connection, client, port):
    """One request on ``connection``: call the app, send what it returns, call close()."""
    from_client, to_client = connection.makefile("rb"), connection.makefile("wb")
    try:
        environ = environ_of(from_client, client, port)
    except ValueError:  # not a request line of three parts, or a Content-Length that is not a number
        to_client.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        to_client.close()
        return
    status_and_headers = None  # what the app last gave start_response
    headers_sent = False

    def write(data):
        """PEP 3333's write(): the status and headers go out before the first bytes of the body."""
        nonlocal headers_sent
        if not headers_sent:
            status, headers = status_and_headers
            head = f"HTTP/1.0 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
            to_client.write((head + "Connection: close\r\n\r\n").encode("latin-1"))
            headers_sent = True
        to_client.write(data)
        to_client.flush()

    def start_response(status, headers, exc_info=None):
        nonlocal status_and_headers
        if exc_info and headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])  # too late to change the status: the PEP says re-raise
        if status_and_headers and not exc_info:
            raise AssertionError("start_response called twice without exc_info")
        texts = [status, *(text for pair in headers for text in pair)]
        if any(isinstance(text, str) and ("\r" in text or "\n" in text) for text in texts):
            raise ValueError("a CR or LF in the status or a header would split the head")  # as gunicorn refuses it
        status_and_headers = (status, headers)  # nothing is sent yet: a later call with exc_info replaces it
        return write

    try:
        body = app(environ, start_response)
        try:
            for chunk in body:
                if chunk:  # an empty chunk sends nothing, not even the headers
                    write(chunk)
            if not headers_sent:
                write(b"")  # an empty body: the status and headers still go out
        finally:
            if hasattr(body, "close"):
                body.close()
    except Exception:
        # The app's error, or a body that is not bytes: to the server's log, as every server does, and a 500
        # if nothing has gone out yet. Once it has, all that is left is to close the connection.
        traceback.print_exc()
        if not headers_sent:
            to_client.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    to_client.close()


def serve(app, port):
    with socket.create_server(("127.0.0.1", port)) as listener:
        print(f"tiny_server: serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        while True:
            connection, client = listener.accept()
            with connection:
                try:
                    serve_one(app, connection, client, port)
                except OSError:  # the client went away: log it, and take the next
                    traceback.print_exc()


if __name__ == "__main__":
    module, _, name = sys.argv[1].partition(":")
    sys.path.insert(0, ".")
    serve(getattr(importlib.import_module(module), name), int(sys.argv[2]))
