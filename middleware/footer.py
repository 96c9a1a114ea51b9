"""A middleware that changes the body: it adds a footer line, and the Content-Length must grow with it.

`footer:appended` does it right; `footer:appended_keeping_length` passes the
app's Content-Length on as it was, the mistake docs/middleware.md shows each
server's answer to.
"""

FOOTER = b"(footer added by middleware/footer.py)\n"


def _footer(app, fix_length):
    def middleware(environ, start_response):
        def footer_start_response(status, headers, exc_info=None):
            if fix_length:
                headers = [(name, str(int(value) + len(FOOTER)) if name.lower() == "content-length" else value)
                           for name, value in headers]
            return start_response(status, headers, exc_info)

        body = app(environ, footer_start_response)

        def with_footer():
            try:
                yield from body
                yield FOOTER
            finally:  # the server's close() of this body closes the app's
                if hasattr(body, "close"):
                    body.close()

        return with_footer()

    return middleware


def appended(app):
    return _footer(app, fix_length=True)


def appended_keeping_length(app):
    return _footer(app, fix_length=False)
