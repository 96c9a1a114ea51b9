"""A middleware that must see the whole body before it sends any: it tags each 200 with an ETag, a hash of
the body, and answers a client that already holds that body (If-None-Match) with a 304 and no body.

`etag:tagged` keeps the contract: it passes the app's `write()`, `exc_info`
and `close()` on, and sends the length of what it sends. But a hash needs
the last byte, so it holds back every block the app yields until then, and
nothing the app streams reaches the client as it is made: the rule PEP 3333
sets for middleware ("Middleware Handling of Block Boundaries") broken on
purpose, for the tour's step 11 to show. A compressor or an HTML rewriter
that collects the body does the same; a real one leaves a streamed
response alone.
"""

import hashlib


def tagged(app):
    def middleware(environ, start_response):
        held = []  # the app's status and headers: they go to the server with the whole body, not before
        pieces = []

        def holding_start_response(status, headers, exc_info=None):
            # Nothing has gone to the server yet, so a call with exc_info simply replaces what is held.
            held[:] = [status, headers]
            return pieces.append  # what the app writes is held too

        body = app(environ, holding_start_response)
        try:
            pieces.extend(body)  # every block the app yields, held back until the last
        finally:
            if hasattr(body, "close"):
                body.close()
        whole = b"".join(pieces)
        status, headers = held
        if not status.startswith("200"):
            start_response(status, headers)
            return [whole]
        etag = '"' + hashlib.sha256(whole).hexdigest()[:16] + '"'
        if etag in (tag.strip() for tag in environ.get("HTTP_IF_NONE_MATCH", "").split(",")):
            start_response("304 Not Modified", [("ETag", etag)])
            return []
        start_response(status, [(name, value) for name, value in headers if name.lower() != "content-length"]
                       + [("Content-Length", str(len(whole))), ("ETag", etag)])
        return [whole]

    return middleware
