"""What nginx tells the app side in request headers: the request id, and when it handed the request on.

nginx sets both (nginx/proxy_http.conf, nginx/uwsgi_params.conf); a request
that comes around nginx may carry anything in them, so each is checked
again here before any hop logs it. The trace context, the third thing
nginx sends, is ``wsgilab.trace_context``'s.
"""

from __future__ import annotations

import re
from time import time_ns
from typing import Any

#: What nginx accepts as a client-supplied request id; anything else it replaces.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def now_us() -> int:
    """Wall-clock time in integer microseconds."""
    return time_ns() // 1000


def request_id_of(environ: dict[str, Any]) -> str:
    """The request id nginx assigned, or "-" if it is missing or malformed."""
    value = environ.get("HTTP_X_REQUEST_ID", "")
    return value if REQUEST_ID.fullmatch(value) else "-"


#: nginx's ``X-Request-Start``: ``t=${msec}``, seconds with three decimals (ASCII digits only).
REQUEST_START = re.compile(r"t=([0-9]{1,12})\.([0-9]{3})")


def queue_start_us(environ: dict[str, Any]) -> int | None:
    """When nginx handed the request on (``X-Request-Start: t=<seconds.millis>``), in µs."""
    found = REQUEST_START.fullmatch(environ.get("HTTP_X_REQUEST_START", ""))
    return None if found is None else int(found[1]) * 1_000_000 + int(found[2]) * 1000
