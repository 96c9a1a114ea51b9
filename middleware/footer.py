"""A middleware that changes the body: it adds a footer line, and the Content-Length must grow with it.

`footer:appended` does it right; `footer:appended_keeping_length` passes the
app's Content-Length on as it was, the mistake docs/middleware.md shows each
server's answer to. It adds its line to every response, to keep it short: a
real one would leave alone a body it must not touch (a 204 or a 304, a
compressed or binary body, a `wsgi.file_wrapper` file).
"""

FOOTER = b"(footer added by middleware/footer.py)\n"


class _WithFooter:
    """The app's body, then the footer. A class, not a generator: the server's close() must reach the app's
    body even when the server closes it before asking for a chunk (a generator not yet started skips its
    ``finally``)."""

    def __init__(self, body):
        self.body = body

    def __iter__(self):
        yield from self.body
        yield FOOTER

    def close(self):
        if hasattr(self.body, "close"):
            self.body.close()


def _footer(app, fix_length):
    def middleware(environ, start_response):
        def footer_start_response(status, headers, exc_info=None):
            if fix_length:
                headers = [(name, str(int(value) + len(FOOTER)))
                           if name.lower() == "content-length" and value.isdigit() else (name, value)
                           for name, value in headers]
            # The server's write() goes back as it is: what it writes comes before the footer anyway.
            return start_response(status, headers, exc_info)

        return _WithFooter(app(environ, footer_start_response))

    return middleware


def appended(app):
    return _footer(app, fix_length=True)


def appended_keeping_length(app):
    return _footer(app, fix_length=False)
