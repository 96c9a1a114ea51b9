"""A small HTTP client for the tests: real sockets, nothing mocked.

Built on http.client so each test sees exactly what nginx sent: the status,
every header, and (for /stream) when each piece of the body arrived.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field


@dataclass
class Reply:
    """One HTTP response as the client saw it."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    #: (seconds since the request was sent, bytes) for each read that returned data
    arrivals: list[tuple[float, int]] = field(default_factory=list)

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """One response header, or None."""
        return self.headers.get(name)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
    """Send one request to 127.0.0.1:port and read the whole response, timing each read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = time.monotonic()
        conn.request(method, path, body=body, headers={"Host": "localhost", **(headers or {})})
        response = conn.getresponse()
        pieces, arrivals = [], []
        while piece := response.read1(65536):
            pieces.append(piece)
            arrivals.append((time.monotonic() - sent, len(piece)))
        return Reply(response.status, response.headers, b"".join(pieces), arrivals)
    finally:
        conn.close()


def get(port: int, path: str, **kwargs) -> Reply:
    """GET path from nginx at 127.0.0.1:port."""
    return request(port, "GET", path, **kwargs)

