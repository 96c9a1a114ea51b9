"""A middleware that must see the whole body before it sends any: it tags each 200 to a GET with an ETag, a
hash of the body, and when the client sends that tag back (If-None-Match) answers 304 Not Modified, no body.

A hash needs the last byte, and the ETag header must go out before the
first, so `etag:tagged` collects the body inside its call and hands the
server one block: nothing the app streams reaches the client as it is made.
PEP 3333 asks more of a middleware ("Middleware Handling of Block
Boundaries"): return an iterable as soon as the app returns one, and yield
something (an empty bytestring if need be) for every block the app yields,
so the server is never kept waiting on the app's blocks. This one breaks
that on purpose, for the tour's step 11 to show; a compressor or an HTML
rewriter that collects the body does the same, and a real one leaves a
streamed response alone.

The rest of the contract it keeps: what the app writes with `write()` is
collected with its body, a call of `start_response` with `exc_info` replaces
what it holds, status, headers and body so far (nothing has gone to the
server yet), it closes the app's body once read (so the app releases what the
request held before the server has a byte), and a 200 goes with the length
of what it sends. A HEAD is passed through untagged: a real one would tag it
as its GET.
"""

import hashlib
import re

#: What a 304 repeats of the 200 it stands for (RFC 9110, 15.4.5).
KEPT_BY_304 = {"cache-control", "content-location", "date", "etag", "expires", "vary"}


def tagged(app):
    def middleware(environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)  # HEAD's body is empty, and a write must not be answered 304
        held = []  # the app's status and headers: they go to the server with the whole body, not before
        pieces = []

        def holding_start_response(status, headers, exc_info=None):
            if held and exc_info is None:
                raise RuntimeError("start_response called a second time without exc_info (PEP 3333)")
            if exc_info is not None:
                pieces.clear()  # what the failed response had made so far is not the error's body
            held[:] = [status, headers]
            return pieces.append  # what the app writes is held too

        body = app(environ, holding_start_response)
        try:
            pieces.extend(body)  # every block the app yields, held back until the last
        finally:
            if hasattr(body, "close"):
                body.close()
        if not held:
            raise RuntimeError("the app returned its body without calling start_response")
        whole = b"".join(pieces)
        status, headers = held
        if not status.startswith("200"):
            start_response(status, headers)  # a 204's or a 304's headers are the app's to set (RFC 9110, 8.6)
            return [whole]
        headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
        etag = next((value for name, value in headers if name.lower() == "etag"), None)
        if etag is None:  # the app's own tag, if it gave one, stands
            etag = '"' + hashlib.sha256(whole).hexdigest()[:16] + '"'
            headers.append(("ETag", etag))
        if _matches(environ.get("HTTP_IF_NONE_MATCH", ""), etag):
            start_response("304 Not Modified", [(name, value) for name, value in headers
                                                 if name.lower() in KEPT_BY_304])
            return []
        start_response(status, [*headers, ("Content-Length", str(len(whole)))])
        return [whole]

    return middleware


#: One entry of If-None-Match: ``*``, or a tag in quotes, weak (``W/``) or not; a tag may hold a comma.
_TAG = re.compile(r'\*|(?:W/)?"[^"]*"')


def _matches(if_none_match, etag):
    """Whether If-None-Match names ``etag``: ``*``, or one of its tags, weak or strong (a weak comparison)."""
    tags = [tag.removeprefix("W/") for tag in _TAG.findall(if_none_match)]
    return "*" in tags or etag.removeprefix("W/") in tags
