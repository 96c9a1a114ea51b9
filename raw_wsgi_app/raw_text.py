"""``/text``: text that is not ASCII, sent as PEP 3333 asks, and on request the mistakes an app by hand makes.

PEP 3333 is WSGI for Python 3, and what it changed from PEP 333 is types:
the body is bytes, and the status and headers are native strings (``str``)
that hold only latin-1, the bytes HTTP puts on the wire. A framework encodes
for its views (Django's HttpResponse, Flask's Response); an app by hand, or a
middleware, must do it itself. ``/text`` does it right: the body encoded as
UTF-8 and said so in Content-Type, and a file name outside latin-1 carried in
a header the way RFC 8187 says (``filename*=UTF-8''`` and percent-escapes).

``?mistake=`` makes one of the mistakes instead, so that each server's answer
shows (docs/tour-wire.md, step 18; tests/test_response_types.py):

``str-body``        the body as ``str``, not bytes
``utf8-header``     a header value outside latin-1 (the file name as it is)
``bytes-header``    a header's name and value as bytes, the Python 2 way
``newline-header``  a file name as a client might send it, a CR LF and a
                    ``Set-Cookie`` in it, put in the header unchecked: the
                    value is fixed here, but on a server that does not check
                    (uWSGI) the client gets the cookie (docs/security.md)
"""

from urllib.parse import parse_qs, quote

TEXT = "Grüße, café ☕\n"
FILE_NAME = "café ☕.txt"
#: The file name of ``newline-header``: what a client could send as an upload's name, to set a cookie of its choice.
SPLITTING_NAME = 'report.txt"\r\nSet-Cookie: session=chosen-by-the-client\r\nX-Rest: "'
MISTAKES = ("str-body", "utf8-header", "bytes-header", "newline-header")


def text(environ, start_response):
    """Answer TEXT, right or with the mistake ``?mistake=`` names."""
    mistake = parse_qs(environ.get("QUERY_STRING", "")).get("mistake", [""])[0]
    if mistake and mistake not in MISTAKES:
        body = f"mistake must be one of {', '.join(MISTAKES)}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"),
                                           ("Content-Length", str(len(body)))])
        return [body]
    body = TEXT.encode("utf-8")
    if mistake == "utf8-header":
        disposition = ("Content-Disposition", f'inline; filename="{FILE_NAME}"')
    elif mistake == "newline-header":
        disposition = ("Content-Disposition", f'inline; filename="{SPLITTING_NAME}"')
    else:  # RFC 8187: the charset, an empty language, then every byte outside its few safe ones %-escaped
        disposition = ("Content-Disposition", f"inline; filename*=UTF-8''{quote(FILE_NAME, safe='')}")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), disposition]
    if mistake == "bytes-header":
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    start_response("200 OK", headers)
    return [TEXT] if mistake == "str-body" else [body]


#: The endpoint as an app of its own, so that tests/test_response_types.py serves this file alone under each server.
application = text
